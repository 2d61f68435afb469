// SHIM: UCRT's sys/types.h has no pid_t (CPython's MSVC pyconfig.h typedefs it); mingw-w64's does.
#pragma once
#ifndef _PID_T_
#define _PID_T_
#endif
#include_next <sys/types.h>
