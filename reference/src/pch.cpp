// Anchors the precompiled <torch/torch.h> shared by every LibTorch translation unit.
#include <torch/torch.h>
