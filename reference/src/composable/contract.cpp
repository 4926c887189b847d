#include "ccts/composable/contract.h"

#include <algorithm>
#include <set>
#include <unordered_set>

#include "ccts/errors.h"
#include "ccts/mutants.h"

namespace ccts::composable {

namespace {

constexpr const char* kStateKey = "composable.state";
constexpr const char* kRegistryKey = "composable.registry";

// module.__dict__[STATE_KEY]: API identity -> state, in application order.
using StateMap = std::vector<std::pair<const void*, std::shared_ptr<State>>>;

template <class T>
std::shared_ptr<T> slot(nn::Module& module, const char* key) {
  auto existing = std::static_pointer_cast<T>(module.annotation(key));
  if (existing) return existing;
  auto created = std::make_shared<T>();
  module.set_annotation(key, created);
  return created;
}

std::vector<std::string> keys(const nn::NamedTensors& items) {
  std::vector<std::string> out;
  for (const auto& item : items) out.push_back(item.first);
  return out;
}

struct FqnSnapshot {
  std::vector<std::string> parameters;
  std::vector<std::string> buffers;
  std::vector<std::string> modules;
};

FqnSnapshot snapshot(nn::Module& module) {
  FqnSnapshot s{keys(module.named_parameters()), keys(module.named_buffers()), {}};
  for (const auto& item : module.named_modules()) s.modules.push_back(item.first);
  return s;
}

// Python's repr of a set of strings; sorted, as a set has no order to keep.
std::string set_repr(const std::set<std::string>& items) {
  if (items.empty()) return "set()";
  std::string out = "{";
  for (const auto& item : items) out += (out.size() > 1 ? ", '" : "'") + item + "'";
  return out + "}";
}

void check_fqn(const std::vector<std::string>& orig, const std::vector<std::string>& updated,
               const std::string& check_key) {
  if (orig == updated || mutant("no_fqn_check")) return;
  const std::set<std::string> orig_set(orig.begin(), orig.end());
  const std::set<std::string> new_set(updated.begin(), updated.end());
  std::set<std::string> orig_only;
  std::set<std::string> new_only;
  std::set_difference(orig_set.begin(), orig_set.end(), new_set.begin(), new_set.end(),
                      std::inserter(orig_only, orig_only.end()));
  std::set_difference(new_set.begin(), new_set.end(), orig_set.begin(), orig_set.end(),
                      std::inserter(new_only, new_only.end()));
  if (!orig_only.empty() || !new_only.empty()) {
    throw ApiError("fqn_modified", check_key +
                                       "Composable distributed API implementations cannot modify "
                                       "FQNs.\nFQNs only in original: " +
                                       set_repr(orig_only) + "\nFQNs only in new: " + set_repr(new_only));
  }
  throw ApiError("fqn_modified", check_key +
                                     "Composable distributed API implementations cannot modify the "
                                     "order of FQNs.\nOriginal FQNs: " +
                                     set_repr(orig_only) + "\nNew FQNs: " + set_repr(new_only));
}

}  // namespace

std::optional<Registry> get_registry(const nn::Module& module) {
  auto registry = std::static_pointer_cast<Registry>(module.annotation(kRegistryKey));
  if (!registry) return std::nullopt;
  return *registry;
}

Modules get_root_modules(const Modules& modules) {
  Modules roots;
  std::unordered_set<const nn::Module*> inside;
  for (const auto& candidate : modules) {
    for (const auto& [path, sub] : candidate->named_modules()) {
      if (sub.get() != candidate.get()) inside.insert(sub.get());
    }
  }
  for (const auto& module : modules) {
    if (!inside.count(module.get())) roots.push_back(module);
  }
  return roots;
}

Contract::Contract(std::string name, Body body, StateFactory make_state)
    : name_(std::move(name)),
      body_(std::move(body)),
      make_state_(make_state ? std::move(make_state) : [] { return std::make_shared<State>(); }),
      identity_(std::make_shared<const char>('c')) {}

Contract::Returned Contract::operator()(const std::shared_ptr<nn::Module>& module) const {
  return call({module}, false, body_);
}

Contract::Returned Contract::operator()(const Modules& modules) const {
  return call(modules, true, body_);
}

std::shared_ptr<State> Contract::state(const nn::Module& module) const {
  auto states = std::static_pointer_cast<StateMap>(module.annotation(kStateKey));
  if (!states) return nullptr;
  for (const auto& [key, state] : *states) {
    if (key == identity_.get()) return state;
  }
  return nullptr;
}

Contract::Returned Contract::call(const Modules& input, bool is_list, const Body& body) const {
  const Modules modules = is_list ? get_root_modules(input) : input;
  auto state = make_state_();  // shared across all modules of the call
  auto item = std::make_shared<RegistryItem>();
  std::vector<FqnSnapshot> before;
  // State and registry are written before the API runs, module by module; a
  // failure leaves earlier modules marked, as PyTorch does.
  for (const auto& module : modules) {
    auto states = slot<StateMap>(*module, kStateKey);
    auto registry = slot<Registry>(*module, kRegistryKey);
    const bool has_state = std::any_of(states->begin(), states->end(),
                                       [&](const auto& s) { return s.first == identity_.get(); });
    const bool has_name = std::any_of(registry->begin(), registry->end(),
                                      [&](const auto& r) { return r.first == name_; });
    if ((has_state || has_name) && !mutant("no_once_check")) {
      throw AssertionError("already_applied",
                           "Each distinct composable distributed API can only be applied to a "
                           "module once. " + name_ + " has already been applied to the following "
                           "module:\n" + module->repr());
    }
    states->emplace_back(identity_.get(), mutant("state_not_shared") ? make_state_() : state);
    registry->emplace_back(name_, item);
    before.push_back(snapshot(*module));
  }

  std::optional<Returned> returned = body(input, is_list);
  const Returned result = returned ? *returned : Returned{input, is_list};
  // A returned module is checked as is; a returned list is checked through
  // the input's roots (PyTorch checks `inp_module` then).
  const Modules updated = result.is_list ? get_root_modules(input) : result.modules;
  if (before.size() != updated.size()) {
    throw AssertionError(name_ + " should return the same number of modules as input modulesInputs: " +
                         std::to_string(before.size()) + " modules\nOutputs: " +
                         std::to_string(updated.size()) + " modules");
  }
  std::vector<FqnSnapshot> after;
  for (const auto& module : updated) after.push_back(snapshot(*module));
  for (std::size_t i = 0; i < before.size(); ++i) {
    check_fqn(before[i].parameters, after[i].parameters, "Checking parameters: ");
  }
  for (std::size_t i = 0; i < before.size(); ++i) {
    check_fqn(before[i].buffers, after[i].buffers, "Checking buffers: ");
  }
  for (std::size_t i = 0; i < before.size(); ++i) {
    check_fqn(before[i].modules, after[i].modules, "Checking modules: ");
  }
  return result;
}

}  // namespace ccts::composable
