#pragma once
// Python's repr of the values PyTorch's messages print, so messages the
// reference raises read exactly as PyTorch's: (a, b), (a,), torch.Size([2, 4]).
#include <string>
#include <vector>
#include <c10/util/ArrayRef.h>

namespace ccts {

// Already-formatted items joined as Python prints a sequence's: "a, b".
inline std::string python_join(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

inline std::vector<std::string> python_ints(c10::IntArrayRef values) {
  std::vector<std::string> items;
  for (int64_t v : values) items.push_back(std::to_string(v));
  return items;
}

// A tuple: "(a, b)", "(a,)", "()".
inline std::string python_tuple(const std::vector<std::string>& items) {
  return "(" + python_join(items) + (items.size() == 1 ? ",)" : ")");
}
inline std::string python_tuple(c10::IntArrayRef values) { return python_tuple(python_ints(values)); }

// torch.Size's repr: "torch.Size([2, 4])".
inline std::string torch_size_repr(c10::IntArrayRef sizes) { return "torch.Size([" + python_join(python_ints(sizes)) + "])"; }

}  // namespace ccts
