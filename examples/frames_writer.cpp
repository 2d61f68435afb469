// The game side of Frames: renders 1920x1080 RGBA frames at 60 Hz straight into shared memory
// (zero-copy: the loaned slot IS the frame buffer), for a Python vision model or RL agent.
//
//   frames_writer NAME [seconds=5] [rate_hz=60] [WIDTHxHEIGHT=1920x1080]
//   python frames_reader.py NAME          (in another terminal)
//
// Readers see whole frames only: the writer never touches a frame a reader holds, a frame
// abandoned mid-render (an exception, a crash) is never shown, and the segment goes away
// when the last process holding it exits.
#include <sharedstate/sharedstate.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: frames_writer NAME [seconds=5] [rate_hz=60] [WIDTHxHEIGHT]\n");
        return 2;
    }
    const double seconds = argc > 2 ? std::atof(argv[2]) : 5.0;
    const double rate = argc > 3 ? std::atof(argv[3]) : 60.0;
    unsigned w = 1920, h = 1080;
    if (argc > 4 && std::sscanf(argv[4], "%ux%u", &w, &h) != 2) {
        std::fprintf(stderr, "frames_writer: size must be WIDTHxHEIGHT\n");
        return 2;
    }
    try {
        // numpy sees (h, w, 4) uint8; readers=4: four frames may be held at once.
        auto fr = sharedstate::Frames::create(argv[1], sharedstate::frame_spec<uint8_t>({h, w, 4}));
        std::printf("ready %s\n", argv[1]);
        std::fflush(stdout);
        const auto period = std::chrono::duration<double>(1.0 / rate);
        const auto start = std::chrono::steady_clock::now();
        unsigned frame = 0;
        for (;; ++frame) {
            double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (t >= seconds) break;
            auto loan = fr.loan();  // a free slot; nobody reads it until commit()
            unsigned char* px = loan.data();
            const unsigned shift = frame * 3, box_x = unsigned(t * 300) % (w > 64 ? w - 64 : 1);
            for (unsigned y = 0; y < h; ++y) {
                unsigned char* row = px + size_t(y) * w * 4;
                for (unsigned x = 0; x < w; ++x) {
                    bool box = x >= box_x && x < box_x + 64 && y >= h / 2 - 32 && y < h / 2 + 32;
                    row[4 * x + 0] = box ? 255 : (unsigned char)(x + shift);
                    row[4 * x + 1] = box ? 255 : (unsigned char)(y + shift);
                    row[4 * x + 2] = box ? 255 : (unsigned char)(x ^ y);
                    row[4 * x + 3] = (unsigned char)frame;  // alpha: the frame number (readers check whole frames)
                }
            }
            loan.commit();  // now it is latest(); version() == frame + 1
            std::this_thread::sleep_until(start + period * (frame + 1));
        }
        std::printf("frames_writer: %u frames, version %llu\n", frame, (unsigned long long)fr.version());
        return 0;
    } catch (const std::exception& e) {  // sharedstate::Error names the object and the OS call
        std::fprintf(stderr, "frames_writer: %s\n", e.what());
        return 1;
    }
}
