// (placeholder: filled in by the mailslot work)
#pragma once
