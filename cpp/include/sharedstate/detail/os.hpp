// Selects the OS backend. Everything above this line is portable.
#pragma once
#if defined(_WIN32)
#include "win32.hpp"
#else
#include "posix.hpp"
#endif
