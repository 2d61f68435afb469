// The game answers requests from Python over a message pipe: each send() is one whole
// message (no framing to write), duplex, local-only (Windows named pipe with remote clients
// rejected; Linux SOCK_SEQPACKET socket in a 0700 directory, peer uid checked).
//
//   pipe_server NAME
//   python pipe_client.py NAME     (in another terminal)
//
// Requests: "add A B" -> "A+B", "ping" -> "pong", "bye" -> "bye" (then the server exits).
#include <chrono>
#include <cstdio>
#include <sharedstate/pipe.hpp>
#include <sstream>
#include <string>

using namespace std::chrono_literals;

static std::string answer(const std::string& req) {
    std::istringstream in(req);
    std::string verb;
    in >> verb;
    if (verb == "add") {
        long a = 0, b = 0;
        if (in >> a >> b) return std::to_string(a + b);
        return "error: add needs two integers";
    }
    if (verb == "ping") return "pong";
    if (verb == "bye") return "bye";
    return "error: unknown request '" + verb + "'";
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: pipe_server NAME\n");
        return 2;
    }
    try {
        sharedstate::PipeServer server(argv[1]);
        std::printf("ready %s\n", argv[1]);
        std::fflush(stdout);
        sharedstate::Pipe conn = server.accept(10s);  // errc::timeout if no client comes
        long requests = 0;
        for (;;) {
            std::string req = conn.recv(10s);  // one whole message
            ++requests;
            std::string resp = answer(req);
            conn.send(resp.data(), resp.size());
            if (resp == "bye") break;
        }
        std::printf("pipe_server: %ld requests\n", requests);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pipe_server: %s\n", e.what());
        return 1;
    }
}
