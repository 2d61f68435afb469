// (placeholder: filled in by the semaphore work)
#pragma once
