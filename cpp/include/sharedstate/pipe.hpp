// (placeholder: filled in by the pipe work)
#pragma once
