#pragma once
// ModTracker (torch.distributed._tools.mod_tracker): which modules are
// running, in forward and in backward, by FQN (spec/mod_tracker.md).
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ccts/nn/hooks.h"
#include "ccts/nn/module.h"

namespace ccts::tools {

class ModTracker {
 public:
  // User hooks; the module is null when it no longer exists (deleted before backward).
  using ForwardHook = std::function<void(nn::Module* module)>;
  using BackwardHook = std::function<void(nn::Module* module)>;

  ModTracker();
  ~ModTracker();
  ModTracker(const ModTracker&) = delete;
  ModTracker& operator=(const ModTracker&) = delete;

  // FQNs of the modules running now; always holds "Global".
  const std::set<std::string>& parents() const { return parents_; }
  // True while a backward runs.
  bool is_bw() const;
  // The FQN the tracker knows the module by, if any.
  std::optional<std::string> get_known_fqn(const nn::Module* module) const;

  // One hook of each kind at a time (PyTorch's AssertionError otherwise);
  // every kind is assigned what is passed, so an empty function clears that
  // kind (MODTRACKER-HOOKS-002).
  void register_user_hooks(ForwardHook pre_fw, ForwardHook post_fw, BackwardHook pre_bw,
                           BackwardHook post_bw);
  void clear_user_hooks();

  // The context manager: enter() installs the global module hooks, exit() removes them.
  void enter();
  void exit();

  struct Scope {
    explicit Scope(ModTracker& tracker) : tracker(tracker) { tracker.enter(); }
    ~Scope() { tracker.exit(); }
    ModTracker& tracker;
  };

 private:
  struct Known {
    std::weak_ptr<nn::Module> module;
    std::string fqn;
  };
  struct State;

  std::string module_name(nn::Module& module);
  void fw_pre_hook(nn::Module& module, const nn::Args& args);
  void fw_post_hook(nn::Module& module, const nn::Value& output);

  std::shared_ptr<State> state_;
  std::set<std::string>& parents_;
  nn::HookHandle pre_handle_;
  nn::HookHandle post_handle_;
};

}  // namespace ccts::tools
