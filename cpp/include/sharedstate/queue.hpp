// (placeholder: filled in by the queue work)
#pragma once
