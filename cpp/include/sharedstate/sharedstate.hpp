// The umbrella header: everything the game process needs.
#pragma once
#include "error.hpp"
#include "layout.hpp"
#include "state.hpp"
