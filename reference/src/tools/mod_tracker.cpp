#include "ccts/tools/mod_tracker.h"

#include <iostream>

#include "ccts/errors.h"
#include "ccts/mutants.h"
#include "ccts/nn/grad_hooks.h"

namespace ccts::tools {

// Everything the hooks touch lives here, shared with the autograd hooks the
// tracker leaves on tensors (they may outlive the tracker's scope).
struct ModTracker::State {
  std::set<std::string> parents{"Global"};
  std::map<std::string, int> active_module_cnt;
  std::map<const nn::Module*, Known> known_modules;
  bool has_callback = false;
  std::vector<std::function<void()>> post_bw_callbacks_to_enqueue;
  ForwardHook user_pre_fw;
  ForwardHook user_post_fw;
  BackwardHook user_pre_bw;
  BackwardHook user_post_bw;

  void maybe_set_engine_callback(const std::shared_ptr<State>& self) {
    if (has_callback) return;
    for (auto it = post_bw_callbacks_to_enqueue.rbegin(); it != post_bw_callbacks_to_enqueue.rend(); ++it) {
      nn::queue_backward_callback(*it);
    }
    post_bw_callbacks_to_enqueue.clear();
    std::weak_ptr<State> weak = self;
    nn::queue_backward_callback([weak] {
      if (auto s = weak.lock()) {
        if (!mutant("parents_not_reset")) s->parents = {"Global"};
        s->has_callback = false;
      }
    });
    has_callback = true;
  }

  // _get_append_fn's body: the module starts running (forward) or its backward starts.
  void append(const std::shared_ptr<State>& self, const std::weak_ptr<nn::Module>& module,
              const std::string& name, bool is_bw) {
    if (is_bw) maybe_set_engine_callback(self);
    const bool added = parents.insert(name).second;
    if (!added && !nn::in_backward()) {
      std::cerr << "warning: The module hierarchy tracking maybe be messed up. Please file a bug to "
                   "PyTorch, if it is the case.\n";
    }
    if (added) {
      active_module_cnt[name] = 1;
    } else {
      active_module_cnt[name] += 1;
    }
    if (user_pre_bw && is_bw) user_pre_bw(alive(module));
  }

  // _get_pop_fn's body: the module's forward ends, or its backward is done.
  void pop(const std::weak_ptr<nn::Module>& module, const std::string& name, bool is_bw) {
    if (user_post_bw && is_bw) user_post_bw(alive(module));
    auto it = parents.find(name);
    if (it != parents.end()) {
      if (--active_module_cnt[name] == 0) parents.erase(it);
    } else if (!nn::in_backward()) {
      throw std::runtime_error("The Module hierarchy tracking is wrong. Report a bug to PyTorch");
    }
  }

  // append() and pop() for later, from a gradient hook (the backward's half).
  static std::function<void()> append_fn(const std::shared_ptr<State>& self, std::weak_ptr<nn::Module> module,
                                         std::string name) {
    std::weak_ptr<State> weak = self;
    return [weak, module = std::move(module), name = std::move(name)] {
      if (auto s = weak.lock()) s->append(s, module, name, true);
    };
  }
  static std::function<void()> pop_fn(const std::shared_ptr<State>& self, std::weak_ptr<nn::Module> module,
                                      std::string name) {
    std::weak_ptr<State> weak = self;
    return [weak, module = std::move(module), name = std::move(name)] {
      if (auto s = weak.lock()) s->pop(module, name, true);
    };
  }

  // _get_mod_name's walk: every descendant is (re)named by its attribute path
  // under `prefix` each time an ancestor runs, as PyTorch does; an entry that
  // already holds that module and name is left as it is (no allocation).
  void learn_children(nn::Module& parent, const std::string& prefix) {
    for (const auto& [child_name, child] : parent.named_children()) {
      Known& entry = known_modules[child.get()];
      if (!holds(entry.module, child)) entry.module = child;
      if (!is_path(entry.fqn, prefix, child_name)) entry.fqn = prefix + "." + child_name;
      learn_children(*child, entry.fqn);
    }
  }

  static bool holds(const std::weak_ptr<nn::Module>& known, const std::shared_ptr<nn::Module>& module) {
    return !known.owner_before(module) && !module.owner_before(known);
  }
  // fqn == prefix + "." + name, without building it.
  static bool is_path(const std::string& fqn, const std::string& prefix, const std::string& name) {
    return fqn.size() == prefix.size() + 1 + name.size() && fqn.compare(0, prefix.size(), prefix) == 0 &&
           fqn[prefix.size()] == '.' && fqn.compare(prefix.size() + 1, name.size(), name) == 0;
  }

  // The module, or null once it was destroyed (Python's dead weakref).
  static nn::Module* alive(const std::weak_ptr<nn::Module>& module) {
    auto strong = module.lock();
    return strong ? strong.get() : nullptr;
  }
};

ModTracker::ModTracker() : state_(std::make_shared<State>()), parents_(state_->parents) {}

ModTracker::~ModTracker() = default;

bool ModTracker::is_bw() const { return nn::in_backward(); }

std::optional<std::string> ModTracker::get_known_fqn(const nn::Module* module) const {
  if (module == nullptr) return std::nullopt;
  auto it = state_->known_modules.find(module);
  if (it == state_->known_modules.end() || it->second.module.expired()) return std::nullopt;
  return it->second.fqn;
}

void ModTracker::register_user_hooks(ForwardHook pre_fw, ForwardHook post_fw, BackwardHook pre_bw,
                                     BackwardHook post_bw) {
  // MODTRACKER-HOOKS-002: like PyTorch's set_hook, each kind in turn is
  // checked, then assigned what was passed, an empty hook included.
  auto set_hook = [](auto& slot, auto& hook, const char* name) {
    if (hook && slot) {
      throw AssertionError(std::string("Only one ") + name +
                           " can be registered at a time Clear the existing hook by calling "
                           "``clear_user_hooks`` before registering a new one");
    }
    if (hook || !mutant("hooks_kept_on_reregister")) slot = std::move(hook);
  };
  set_hook(state_->user_pre_fw, pre_fw, "pre_fw_hook");
  set_hook(state_->user_post_fw, post_fw, "post_fw_hook");
  set_hook(state_->user_pre_bw, pre_bw, "pre_bw_hook");
  set_hook(state_->user_post_bw, post_bw, "post_bw_hook");
}

void ModTracker::clear_user_hooks() {
  state_->user_pre_fw = nullptr;
  state_->user_post_fw = nullptr;
  state_->user_pre_bw = nullptr;
  state_->user_post_bw = nullptr;
}

std::string ModTracker::module_name(nn::Module& module) {
  // _get_mod_name: a root is named by its type; children by attribute path,
  // learned each time their parent runs. A copy: user hooks may rename.
  auto [it, added] = state_->known_modules.try_emplace(&module);
  if (added || it->second.module.expired()) it->second = Known{module.weak_from_this(), module.type_name()};
  state_->learn_children(module, it->second.fqn);
  return it->second.fqn;
}

void ModTracker::fw_pre_hook(nn::Module& module, const nn::Args& args) {
  std::string name = module_name(module);
  auto weak = module.weak_from_this();
  if (mutant("pre_fw_before_append") && state_->user_pre_fw) state_->user_pre_fw(&module);
  state_->append(state_, weak, name, false);
  if (state_->user_pre_fw && !mutant("pre_fw_before_append")) state_->user_pre_fw(&module);
  std::vector<torch::Tensor> tensors;
  for (const auto& arg : args) {
    for (const auto& t : arg.tensors()) {
      if (t.requires_grad()) tensors.push_back(t);
    }
  }
  if (!nn::in_backward()) {
    if (!tensors.empty()) {
      nn::register_multi_grad_hook(tensors, State::pop_fn(state_, std::move(weak), std::move(name)),
                                   nn::MultiGradMode::All);
    } else {
      state_->post_bw_callbacks_to_enqueue.push_back(State::pop_fn(state_, std::move(weak), std::move(name)));
    }
  }
}

void ModTracker::fw_post_hook(nn::Module& module, const nn::Value& output) {
  std::string name = module_name(module);
  auto weak = module.weak_from_this();
  if (state_->user_post_fw) state_->user_post_fw(&module);
  state_->pop(weak, name, false);
  std::vector<torch::Tensor> tensors;
  for (const auto& t : output.tensors()) {
    if (t.requires_grad()) tensors.push_back(t);
  }
  if (!nn::in_backward() && !tensors.empty()) {
    nn::register_multi_grad_hook(tensors, State::append_fn(state_, std::move(weak), std::move(name)),
                                 nn::MultiGradMode::Any);
  }
}

void ModTracker::enter() {
  pre_handle_ = nn::register_module_forward_pre_hook([this](nn::Module& m, const nn::Args& args, const nn::Kwargs&) {
    fw_pre_hook(m, args);
    return std::optional<nn::ForwardPreResult>();
  });
  post_handle_ = nn::register_module_forward_hook(
      [this](nn::Module& m, const nn::Args&, const nn::Kwargs&, const nn::Value& out) {
        fw_post_hook(m, out);
        return std::optional<nn::Value>();
      },
      /*always_call=*/true);
}

void ModTracker::exit() {
  pre_handle_.remove();
  post_handle_.remove();
}

}  // namespace ccts::tools
