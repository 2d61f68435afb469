// The umbrella header: everything the game process needs.
#pragma once
#include "error.hpp"
#include "layout.hpp"
#include "state.hpp"
#include "queue.hpp"
#include "frames.hpp"
#include "mailslot.hpp"
#include "pipe.hpp"
#include "semaphore.hpp"
#include "waitset.hpp"
