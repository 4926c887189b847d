#include "case_interpreter.h"

#include <chrono>
#include <algorithm>
#include <map>
#include <optional>

#include <torch/torch.h>

#include "ccts/distributed/process_group.h"
#include "ccts/errors.h"
#include "ccts/fixtures/fixture.h"
#include "ccts/fully_shard/fully_shard.h"
#include "ccts/nn/checkpoint.h"
#include "ccts/nn/grad_hooks.h"
#include "ccts/nn/module.h"
#include "ccts/tools/mod_tracker.h"
#include "ccts/values/codec.h"
#include "ccts/values/generator.h"
#include "builtin_apis.h"
#include "test_api.h"

namespace ccts::adapter {

namespace {

constexpr const char* kName = "ccts-reference";
// The suite version, written once as CMake's project(ccts VERSION ...) and
// passed in by reference/adapter/CMakeLists.txt (the runner reads the same line).
#ifndef CCTS_SUITE_VERSION
#error "CCTS_SUITE_VERSION is not defined: build ccts-adapter through CMake (PROJECT_VERSION)"
#endif
constexpr const char* kVersion = CCTS_SUITE_VERSION;

// An error raised while running a step: its kind, message and the step's index
// path. The runner derives the phase from the path (spec/ADAPTERS.md, "Errors").
struct StepFailure {
  std::string kind;
  std::string message;
  std::string step;
};

json error_json(const StepFailure& f) { return {{"kind", f.kind}, {"message", f.message}, {"step", f.step}}; }

// Everything one case creates; destroyed when the case ends.
class CaseRun {
 public:
  CaseRun(const json& message, int rank, int world_size, distributed::ProcessGroup* pg)
      : message_(message), rank_(rank), world_size_(world_size), process_group_(pg) {
    const json fixtures = message.value("fixtures", json::object());
    for (const auto& item : fixtures.items()) {
      fixtures_.emplace(item.key(), fixtures::fixture_from_json(item.value(), "fixture " + item.key()));
    }
  }

  json execute() {
    std::optional<StepFailure> failure;
    try {
      run_steps(message_.at("case").at("steps"), "");
    } catch (const StepError& e) {
      failure = e.failure;
    }
    return failure ? error_json(*failure) : json(nullptr);
  }

  json observations() const { return observations_; }

 private:
  struct StepError {
    StepFailure failure;
  };

  void run_steps(const json& steps, const std::string& path) {
    for (std::size_t i = 0; i < steps.size(); ++i) {
      const std::string step_path = path.empty() ? std::to_string(i) : path + "." + std::to_string(i);
      const json& step = steps[i];
      if (!step.is_object() || step.size() != 1) {
        throw StepError{{"invalid_argument", "a step is a mapping with exactly one key", step_path}};
      }
      const auto only = step.begin();
      const std::string name = only.key();
      const json& body = only.value();
      try {
        run_step(name, body, step_path);
      } catch (const StepError&) {
        throw;
      } catch (const ApiError& e) {
        throw StepError{{e.kind(), e.what(), step_path}};
      } catch (const fixtures::FixtureError& e) {
        throw StepError{{"invalid_argument", e.what(), step_path}};
      } catch (const std::invalid_argument& e) {
        throw StepError{{"invalid_argument", e.what(), step_path}};
      } catch (const c10::Error& e) {
        throw StepError{{"runtime_error", e.what_without_backtrace(), step_path}};
      } catch (const std::exception& e) {
        throw StepError{{"runtime_error", e.what(), step_path}};
      }
    }
  }

  using StepHandler = void (CaseRun::*)(const json& body, const std::string& path);

  // Every step of spec/CASES.md (its schema defines them) and its handler.
  static const std::map<std::string, StepHandler>& step_handlers() {
    static const std::map<std::string, StepHandler> handlers = {
        {"build", &CaseRun::step_build},
        {"copy", &CaseRun::step_copy},
        {"input", &CaseRun::step_input},
        {"batch", &CaseRun::step_batch},
        {"slice", &CaseRun::step_slice},
        {"cast", &CaseRun::step_cast},
        {"to_dtype", &CaseRun::step_to_dtype},
        {"to_empty", &CaseRun::step_to_empty},
        {"init_parameters", &CaseRun::step_init_parameters},
        {"forward", &CaseRun::step_forward},
        {"call_method", &CaseRun::step_call_method},
        {"backward", &CaseRun::step_backward},
        {"zero_grad", &CaseRun::step_zero_grad},
        {"probe_post_accumulate_grad", &CaseRun::step_probe_post_accumulate_grad},
        {"sgd_in_backward", &CaseRun::step_sgd_in_backward},
        {"sgd_step", &CaseRun::step_sgd_step},
        {"clip_grad_norm", &CaseRun::step_clip_grad_norm},
        {"mse_loss", &CaseRun::step_mse_loss},
        {"state_dict", &CaseRun::step_state_dict},
        {"distribute_value", &CaseRun::step_distribute_value},
        {"load_state_dict", &CaseRun::step_load_state_dict},
        {"set_requires_grad", &CaseRun::step_set_requires_grad},
        {"raises", &CaseRun::step_raises},
        {"repeat", &CaseRun::step_repeat},
        {"count_collectives", &CaseRun::step_count_collectives},
        {"observe", &CaseRun::step_observe},
        {"define_api", &CaseRun::step_define_api},
        {"apply", &CaseRun::step_apply},
        {"set_requires_gradient_sync", &CaseRun::step_set_requires_gradient_sync},
        {"register_comm_hook", &CaseRun::step_register_comm_hook},
        {"unshard", &CaseRun::step_unshard},
        {"reshard", &CaseRun::step_reshard},
        {"reset_iter_state", &CaseRun::step_reset_iter_state},
        {"tracker", &CaseRun::step_tracker},
        {"register_user_hooks", &CaseRun::step_register_user_hooks},
        {"clear_user_hooks", &CaseRun::step_clear_user_hooks},
        {"track", &CaseRun::step_track},
        {"global_hooks", &CaseRun::step_global_hooks},
        {"delete", &CaseRun::step_delete},
        {"to_device", &CaseRun::step_to_device},
    };
    return handlers;
  }

  void run_step(const std::string& name, const json& body, const std::string& path) {
    // spec/CASES.md: a bounded case (nested repeats multiply).
    if (++steps_run_ > kMaxSteps) {
      throw std::invalid_argument("the case runs more than " + std::to_string(kMaxSteps) +
                                  " steps, counting each repetition (spec/CASES.md)");
    }
    const auto& handlers = step_handlers();
    auto it = handlers.find(name);
    if (it != handlers.end()) {
      (this->*(it->second))(body, path);
    } else if (!run_method_step(name, body, [this](const json& r) { return module_ref(r); })) {
      throw Unsupported("step '" + name + "' is not supported by " + kName);
    }
  }

  void step_build(const json& body, const std::string&) {
    const fixtures::Fixture& fixture = fixture_named(body.at("fixture").get<std::string>());
    fixtures::BuildOptions options;
    options.seed = seed_of(body);
    options.probe = [this](const std::string& probe) { on_probe(probe); };
    options.checkpoint = [](nn::Module& m, const nn::Args& args) { return nn::checkpoint(m, args); };
    auto built = fixtures::build_module(fixture, options);
    if (body.value("device", "") == "meta") built->to(torch::Device(torch::kMeta));
    models_[body.at("as").get<std::string>()] = built;
  }

  void step_copy(const json& body, const std::string&) {
    models_[body.at("as").get<std::string>()] = model(body.at("from")).deep_copy();
  }

  void step_input(const json& body, const std::string&) {
    const fixtures::Fixture& fixture = fixture_named(body.at("fixture").get<std::string>());
    fixtures::Input input = fixtures::make_input(fixture, seed_of(body));
    values_[body.at("as").get<std::string>()] =
        input.kwargs.empty() && input.args.size() == 1 ? input.args.front() : nn::Value::tuple(input.args);
    inputs_[body.at("as").get<std::string>()] = std::move(input);
  }

  void step_slice(const json& body, const std::string&) {
    const torch::Tensor& whole = value(body.at("from")).tensor();
    const int64_t dim = body.value("dim", 0);
    // by rank: one chunk per rank; by {subgroups_of: n}: one per group of n ranks.
    const json by = body.value("by", json("rank"));
    const int64_t size = by.is_object() ? by.at("subgroups_of").get<int64_t>() : 1;
    if (size < 1 || world_size_ % size != 0) {
      throw std::invalid_argument("slice: subgroups_of " + std::to_string(size) + " does not divide the world size " +
                                  std::to_string(world_size_));
    }
    const int64_t chunks = world_size_ / size;
    if (whole.size(dim) % chunks != 0) {
      throw std::invalid_argument("slice: dimension " + std::to_string(dim) + " of size " +
                                  std::to_string(whole.size(dim)) + " does not split into " +
                                  std::to_string(chunks) + " equal chunks");
    }
    const int64_t chunk = whole.size(dim) / chunks;
    values_[body.at("as").get<std::string>()] = whole.narrow(dim, (rank_ / size) * chunk, chunk).clone();
  }

  void step_call_method(const json& body, const std::string&) {
    nn::Args args;
    for (const auto& a : body.value("args", json::array())) args.push_back(value(a));
    nn::Value out = model(body.at("model")).call_method(body.at("method").get<std::string>(), args);
    if (body.contains("as")) values_[body["as"].get<std::string>()] = out;
  }

  void step_backward(const json& body, const std::string&) {
    torch::Tensor loss;
    nn::Value listed;  // `of: [a, b]`: every value's tensors in one loss
    if (body.at("of").is_array()) {
      nn::Value::Items items;
      for (const auto& v : body["of"]) items.push_back(value(v));
      listed = nn::Value::list(std::move(items));
    }
    const nn::Value& of = body.at("of").is_array() ? listed : value(body.at("of"));
    // `item`: only that element of a tuple/list or key of a dict.
    const nn::Value& part = !body.contains("item") ? of
                            : body["item"].is_string() ? of.at(body["item"].get<std::string>())
                                                       : of.at(body["item"].get<std::int64_t>());
    for (const auto& t : part.tensors()) loss = loss.defined() ? loss + t.sum() : t.sum();
    if (!loss.defined()) throw std::invalid_argument("backward: the value holds no tensor");
    loss.backward();
  }

  void step_mse_loss(const json& body, const std::string&) {
    const torch::Tensor& input = value(body.at("input")).tensor();
    const torch::Tensor& target = value(body.at("target")).tensor();
    // Mixed dtypes promote, as F.mse_loss does on 2.x (LibTorch 1.13's backward rejects them).
    const auto dtype = c10::promoteTypes(input.scalar_type(), target.scalar_type());
    values_[body.at("as").get<std::string>()] = torch::mse_loss(input.to(dtype), target.to(input.device(), dtype));
  }

  // sd = model.state_dict(): a dict value of the module's own tensors (detached, not copied).
  void step_state_dict(const json& body, const std::string&) {
    nn::Value::DictItems items;
    for (auto& [key, tensor] : model(body.at("model")).state_dict()) items.emplace_back(key, tensor);
    values_[body.at("as").get<std::string>()] = nn::Value::dict(std::move(items));
  }
  void step_load_state_dict(const json& body, const std::string&) {
    model(body.at("model")).load_state_dict(model(body.at("from")).state_dict());
  }

  // Methods replicate and fully_shard add to a module (builtin_apis.cpp).
  void step_set_requires_gradient_sync(const json& body, const std::string&) {
    set_requires_gradient_sync(model(body.at("model")), body.at("value").get<bool>(), body.value("recurse", true));
  }
  void step_unshard(const json& body, const std::string&) { unshard(model(body.at("model"))); }
  void step_register_comm_hook(const json& body, const std::string&) {
    register_comm_hook(model(body.at("model")), body.at("hook").get<std::string>());
  }
  void step_reshard(const json& body, const std::string&) { reshard(model(body.at("model"))); }
  void step_reset_iter_state(const json& body, const std::string&) { reset_iter_state(model(body.at("model"))); }

  // module.requires_grad_(value): every parameter of the module and its children.
  void step_set_requires_grad(const json& body, const std::string&) {
    const bool value = body.at("value").get<bool>();
    if (body.contains("model")) {
      for (auto& p : model(body.at("model")).parameters()) p.requires_grad_(value);
    }
    for (const auto& ref : body.value("parameters", json::array())) {
      parameter_of(ref, [this](const json& r) { return module_ref(r); }).requires_grad_(value);
    }
  }

  void step_clip_grad_norm(const json& body, const std::string&) {
    torch::Tensor norm = fully_shard::clip_grad_norm_(model(body.at("model")).parameters(), body.at("max_norm").get<double>());
    if (body.contains("as")) values_[body["as"].get<std::string>()] = norm;
  }

  void step_cast(const json& body, const std::string&) {
    const torch::Tensor& t = value(body.at("from")).tensor();
    values_[body.at("as").get<std::string>()] = t.to(values::dtype_from_name(body.at("dtype").get<std::string>()));
  }

  void step_to_dtype(const json& body, const std::string&) {
    nn::Module& m = model(body.at("model"));
    fully_shard::to_dtype(m, values::dtype_from_name(body.at("dtype").get<std::string>()));
  }

  void step_to_empty(const json& body, const std::string&) { fully_shard::to_empty(model(body.at("model")), torch::kCPU); }

  // Each parameter gets the value of its name in a fresh build; a sharded one its shard of it.
  void step_init_parameters(const json& body, const std::string&) {
    const fixtures::Fixture& fixture = fixture_named(body.at("fixture").get<std::string>());
    fixtures::BuildOptions options;
    options.seed = seed_of(body);
    auto fresh = fixtures::build_module(fixture, options);
    std::map<std::string, torch::Tensor> full;
    for (const auto& [fqn, p] : fresh->named_parameters()) full[fqn] = p;
    torch::NoGradGuard no_grad;
    for (const auto& [fqn, p] : model(body.at("model")).named_parameters()) {
      auto it = full.find(fqn);
      if (it == full.end()) throw std::invalid_argument("init_parameters: fixture " + fixture.name + " has no parameter '" + fqn + "'");
      torch::Tensor target = p;
      target.copy_(fully_shard::shard_of(p, it->second));
    }
  }

  void step_to_device(const json& body, const std::string&) {
    model(body.at("model")).to(torch::Device(body.at("device").get<std::string>()));
  }

  void step_zero_grad(const json& body, const std::string&) {
    model(body.at("model")).zero_grad(body.value("set_to_none", true));
  }

  // A post-accumulate-grad hook on each parameter, reporting the probe
  // `post_accumulate_grad:<fqn>` each time it runs.
  void step_probe_post_accumulate_grad(const json& body, const std::string&) {
    for (const auto& [fqn, p] : model(body.at("model")).named_parameters()) {
      hook_handles_.push_back(nn::register_post_accumulate_grad_hook(
          p, [this, name = fqn] { on_probe("post_accumulate_grad:" + name); }));
    }
  }

  // The optimizer in backward: each parameter's post-accumulate-grad hook
  // steps it and drops its gradient. The hook holds its tensor weakly.
  void step_sgd_in_backward(const json& body, const std::string&) {
    const double lr = body.at("lr").get<double>();
    for (const auto& p : model(body.at("model")).parameters()) {
      c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> weak(p.getIntrusivePtr());
      hook_handles_.push_back(nn::register_post_accumulate_grad_hook(p, [weak, lr] {
        torch::Tensor t(weak.lock());
        if (!t.defined() || !t.grad().defined()) return;
        torch::NoGradGuard no_grad;
        t.add_(t.grad(), -lr);
        t.mutable_grad() = torch::Tensor();
      }));
    }
  }

  void step_sgd_step(const json& body, const std::string&) {
    torch::NoGradGuard no_grad;
    const double lr = body.at("lr").get<double>();
    for (auto& p : model(body.at("model")).parameters()) {
      if (p.grad().defined()) p.add_(p.grad(), -lr);
    }
  }

  void step_raises(const json& body, const std::string& path) {
    json recorded = nullptr;
    try {
      run_steps(body.at("do"), path + ".do");
    } catch (const StepError& e) {
      recorded = error_json(e.failure);
    }
    observations_[body.at("as").get<std::string>()] = {{"kind", "error"}, {"error", recorded}};
  }

  void step_repeat(const json& body, const std::string& path) {
    const int64_t times = body.at("times").get<int64_t>();
    const int64_t outer = step_index_;
    for (int64_t i = 0; i < times; ++i) {
      step_index_ = i;
      run_steps(body.at("do"), path + ".do");
    }
    step_index_ = outer;
  }

  // The collectives `do` issued, from the process groups' counters.
  void step_count_collectives(const json& body, const std::string& path) {
    const distributed::CollectiveCounts before = distributed::collective_counts();
    run_steps(body.at("do"), path + ".do");
    const distributed::CollectiveCounts after = distributed::collective_counts();
    observations_[body.at("as").get<std::string>()] = json_value({{"all_gather", after.all_gather - before.all_gather},
                                                                  {"reduce_scatter", after.reduce_scatter - before.reduce_scatter},
                                                                  {"all_reduce", after.all_reduce - before.all_reduce}});
  }

  void step_define_api(const json& body, const std::string&) {
    apis_[body.at("name").get<std::string>()] = make_test_api(
        body, [this](const std::string& as, json obs) { observations_[as] = std::move(obs); });
  }

  void step_tracker(const json& body, const std::string&) {
    const std::string as = body.at("as").get<std::string>();
    trackers_[as] = std::make_unique<tools::ModTracker>();
    tracker_events_[as] = json::array();
    with_parents_[as] = body.value("record_parents", false);
    if (body.value("record_hooks", false)) {
      register_recording_hooks(as, {"pre_fw", "post_fw", "pre_bw", "post_bw"}, body.value("raising", json::array()));
    }
  }

  void step_register_user_hooks(const json& body, const std::string&) {
    register_recording_hooks(body.at("tracker").get<std::string>(), body.at("hooks"));
  }

  void step_clear_user_hooks(const json& body, const std::string&) { tracker(body.at("tracker")).clear_user_hooks(); }

  void step_track(const json& body, const std::string& path) {
    const std::string t = body.at("tracker").get<std::string>();
    tools::ModTracker::Scope scope(tracker(t));
    active_trackers_.push_back(t);
    try {
      run_steps(body.at("do"), path + ".do");
    } catch (...) {
      active_trackers_.pop_back();
      throw;
    }
    active_trackers_.pop_back();
  }

  // Global module hooks of the four kinds appending {hook, module} to the
  // observation `as`; their handles go with the case.
  void step_global_hooks(const json& body, const std::string&) {
    const std::string as = body.at("as").get<std::string>();
    observations_[as] = {{"kind", "json"}, {"value", json::array()}};
    auto seen = std::make_shared<std::vector<const nn::Module*>>();  // modules by first appearance: their id
    auto record = [this, as, seen](const char* hook, nn::Module& module) {
      auto it = std::find(seen->begin(), seen->end(), &module);
      if (it == seen->end()) it = seen->insert(seen->end(), &module);
      json event = {{"hook", hook}, {"module", module.type_name()}, {"id", it - seen->begin()}};
      if (!active_trackers_.empty()) {  // inside `track`: what the innermost tracker holds at this moment
        const auto& parents = trackers_.at(active_trackers_.back())->parents();
        event["parents"] = std::vector<std::string>(parents.begin(), parents.end());
      }
      observations_[as]["value"].push_back(std::move(event));
    };
    global_hooks_.push_back(nn::register_module_forward_pre_hook(
        [record](nn::Module& m, const nn::Args&, const nn::Kwargs&) {
          record("forward_pre", m);
          return std::optional<nn::ForwardPreResult>();
        }));
    global_hooks_.push_back(nn::register_module_forward_hook(
        [record](nn::Module& m, const nn::Args&, const nn::Kwargs&, const nn::Value&) {
          record("forward", m);
          return std::optional<nn::Value>();
        }));
    global_hooks_.push_back(nn::register_module_full_backward_pre_hook([record](nn::Module& m, const nn::TensorList&) {
      record("backward_pre", m);
      return std::optional<nn::TensorList>();
    }));
    global_hooks_.push_back(nn::register_module_full_backward_hook(
        [record](nn::Module& m, const nn::TensorList&, const nn::TensorList&) {
          record("backward", m);
          return std::optional<nn::TensorList>();
        }));
  }

  void step_delete(const json& body, const std::string&) {
    // `del model`: the case drops its reference; nothing else owns the model.
    if (!models_.erase(body.at("model").get<std::string>())) {
      throw std::invalid_argument("no model named '" + body.at("model").get<std::string>() + "'");
    }
  }

  void step_distribute_value(const json& body, const std::string&) {
    values_[body.at("as").get<std::string>()] = distribute_value(value(body.at("from")).tensor(), body.at("mesh"));
  }
  void step_batch(const json& body, const std::string&) {
    std::vector<int64_t> shape;
    for (const auto& d : body.at("shape")) {
      shape.push_back(d == "world_size" ? world_size_ : d.get<int64_t>());
    }
    const std::string as = body.at("as").get<std::string>();
    const std::uint64_t stream = values::fnv1a64(body.value("stream", as));
    const std::string dist = body.value("dist", "uniform");
    torch::Tensor t;
    if (dist == "normal") {
      t = values::normal(shape, seed_of(body), stream);
    } else if (dist == "uniform") {
      t = values::uniform(shape, body.value("low", -1.0), body.value("high", 1.0), seed_of(body), stream);
    } else {
      throw std::invalid_argument("batch.dist: expected uniform or normal, got '" + dist + "'");
    }
    if (body.value("requires_grad", false)) t.requires_grad_(true);
    values_[as] = t;
  }

  // `m` or `m.<dotted path>`: a model of the case or one of its submodules,
  // looked up as PyTorch's get_submodule does, with its AttributeError texts
  // (FIXTURES-REF-001; the kind is invalid_argument, as for AttributeError).
  std::shared_ptr<nn::Module> module_ref(const json& ref) {
    const std::string text = ref.get<std::string>();
    const std::size_t dot = text.find('.');
    auto it = models_.find(text.substr(0, dot));
    if (it == models_.end()) throw std::invalid_argument("no model named '" + text.substr(0, dot) + "'");
    std::shared_ptr<nn::Module> module = it->second;
    for (std::size_t start = dot; start != std::string::npos;) {
      const std::size_t next = text.find('.', start + 1);
      const std::string atom = text.substr(start + 1, next == std::string::npos ? std::string::npos : next - start - 1);
      if (!module->has_child(atom)) {
        if (module->has_parameter(atom) || module->has_buffer(atom) || module->has_attribute(atom)) {
          throw std::invalid_argument("`" + atom + "` is not an nn.Module");
        }
        throw std::invalid_argument(module->type_name() + " has no attribute `" + atom + "`");
      }
      module = module->child(atom);
      start = next;
    }
    return module;
  }

  // An API of define_api, else a built-in one (replicate, fully_shard).
  const composable::Contract& api_named(const json& name) {
    auto it = apis_.find(name.get<std::string>());
    if (it != apis_.end()) return *it->second;
    if (const composable::Contract* builtin = builtin_contract(name.get<std::string>())) return *builtin;
    throw std::invalid_argument("no API named '" + name.get<std::string>() + "'");
  }

  tools::ModTracker& tracker(const json& name) {
    auto it = trackers_.find(name.get<std::string>());
    if (it == trackers_.end()) throw std::invalid_argument("no tracker named '" + name.get<std::string>() + "'");
    return *it->second;
  }

  json tracker_state(const std::string& name) {
    tools::ModTracker& t = *trackers_.at(name);
    return {{"parents", json(std::vector<std::string>(t.parents().begin(), t.parents().end()))},
            {"is_bw", t.is_bw()}};
  }

  // Fixture probes record the innermost active tracker's state (the upstream
  // tests append copy(tracker.parents) and tracker.is_bw at those points).
  void on_probe(const std::string& probe) {
    probes_.push_back(probe);
    if (active_trackers_.empty()) return;
    json event = tracker_state(active_trackers_.back());
    event["probe"] = probe;
    tracker_events_[active_trackers_.back()].push_back(event);
  }

  // User hooks that record (hook, fqn, fqn in parents, is_bw) as test_mod_tracker.py's do,
  // and the whole parents set (sorted) where the tracker has record_parents.
  // Hooks of the kinds in `raising` raise after recording (a user hook that fails).
  void register_recording_hooks(const std::string& name, const json& kinds, const json& raising = json::array()) {
    tools::ModTracker* t = &tracker(json(name));
    auto record = [this, t, name, raising](const char* hook, nn::Module* module) {
      std::optional<std::string> fqn = t->get_known_fqn(module);
      json event = {{"hook", hook},
                    {"fqn", fqn ? json(*fqn) : json(nullptr)},
                    {"in_parents", fqn ? t->parents().count(*fqn) > 0 : false},
                    {"is_bw", t->is_bw()}};
      if (with_parents_[name]) event["parents"] = std::vector<std::string>(t->parents().begin(), t->parents().end());
      tracker_events_[name].push_back(std::move(event));
      for (const auto& kind : raising) {
        if (kind == hook) throw std::runtime_error(std::string("user ") + hook + " hook raised");
      }
    };
    tools::ModTracker::ForwardHook pre_fw, post_fw;
    tools::ModTracker::BackwardHook pre_bw, post_bw;
    for (const auto& kind : kinds) {
      if (kind == "pre_fw") pre_fw = [record](nn::Module* m) { record("pre_fw", m); };
      else if (kind == "post_fw") post_fw = [record](nn::Module* m) { record("post_fw", m); };
      else if (kind == "pre_bw") pre_bw = [record](nn::Module* m) { record("pre_bw", m); };
      else if (kind == "post_bw") post_bw = [record](nn::Module* m) { record("post_bw", m); };
      else throw std::invalid_argument("register_user_hooks.hooks: unknown hook " + kind.dump());
    }
    t->register_user_hooks(pre_fw, post_fw, pre_bw, post_bw);
  }

  void step_apply(const json& body, const std::string&) {
    const std::string name = body.at("api").get<std::string>();
    if (!apis_.count(name) && builtin_contract(name)) {
      apply_builtin(name, body.at("to"), body.value("kwargs", json::object()),
                    [this](const json& ref) { return module_ref(ref); });
      if (body.contains("as") && !body["to"].is_array()) models_[body["as"].get<std::string>()] = module_ref(body["to"]);
      return;
    }
    if (body.contains("kwargs") && !body["kwargs"].empty()) {
      throw std::invalid_argument("apply.kwargs: API '" + name + "' (define_api) takes no keyword arguments");
    }
    const composable::Contract& api = api_named(body.at("api"));
    const json& to = body.at("to");
    composable::Contract::Returned returned;
    if (to.is_array()) {
      composable::Modules modules;
      for (const auto& ref : to) modules.push_back(module_ref(ref));
      returned = api(modules);
    } else {
      returned = api(module_ref(to));
    }
    if (body.contains("as") && !returned.is_list && !returned.modules.empty()) {
      models_[body["as"].get<std::string>()] = returned.modules.front();
    }
  }

  // Small integers for object identities, numbered in order of appearance, so
  // cases can say "shared iff applied in one call" across implementations.
  json identities(const std::vector<const void*>& objects) const {
    std::vector<const void*> seen;
    json out = json::array();
    for (const void* object : objects) {
      if (!object) {
        out.push_back(nullptr);
        continue;
      }
      auto it = std::find(seen.begin(), seen.end(), object);
      if (it == seen.end()) {
        seen.push_back(object);
        it = seen.end() - 1;
      }
      out.push_back(it - seen.begin());
    }
    return out;
  }

  void step_forward(const json& body, const std::string&) {
    nn::Module& m = model(body.at("model"));
    nn::Args args;
    nn::Kwargs kwargs;
    if (body.contains("input")) {
      const fixtures::Input& input = inputs_.at(body["input"].get<std::string>());
      args = input.args;
      kwargs = input.kwargs;
    }
    for (const auto& a : body.value("args", json::array())) args.push_back(value(a));
    const json kwargs_spec = body.value("kwargs", json::object());
    for (const auto& item : kwargs_spec.items()) {
      kwargs.emplace_back(item.key(), value(item.value()));
    }
    std::optional<torch::NoGradGuard> no_grad;
    if (body.value("no_grad", false)) no_grad.emplace();
    nn::Value out = m(std::move(args), std::move(kwargs));
    if (body.contains("as")) values_[body["as"].get<std::string>()] = out;
  }

  using ObserveHandler = json (CaseRun::*)(const json& ref);

  // The observation kinds of spec/CASES.md and spec/contract.md; the built-in
  // APIs' kinds (spec/replicate.md, spec/fully_shard.md) are builtin_apis.cpp's.
  static const std::map<std::string, ObserveHandler>& observe_handlers() {
    static const std::map<std::string, ObserveHandler> handlers = {
        {"named_parameters", &CaseRun::observe_named_parameters},
        {"parameter_fqns", &CaseRun::observe_parameter_fqns},
        {"named_buffers", &CaseRun::observe_named_buffers},
        {"buffer_fqns", &CaseRun::observe_buffer_fqns},
        {"state_dict", &CaseRun::observe_state_dict},
        {"state_dict_keys", &CaseRun::observe_state_dict_keys},
        {"module_fqns", &CaseRun::observe_module_fqns},
        {"grads", &CaseRun::observe_grads},
        {"value", &CaseRun::observe_value_named},
        {"probes", &CaseRun::observe_probes},
        {"tracker_events", &CaseRun::observe_tracker_events},
        {"tracker_state", &CaseRun::observe_tracker_state},
        {"registry", &CaseRun::observe_registry},
        {"registry_identity", &CaseRun::observe_registry_identity},
        {"state_identity", &CaseRun::observe_state_identity},
        {"state", &CaseRun::observe_state},
        {"state_type", &CaseRun::observe_state_type},
    };
    return handlers;
  }

  void step_observe(const json& body, const std::string&) {
    std::string kind;
    for (const auto& item : body.items()) {
      if (item.key() != "as") kind = item.key();
    }
    const json& ref = body.at(kind);
    const auto& handlers = observe_handlers();
    auto it = handlers.find(kind);
    json obs;
    if (it != handlers.end()) {
      obs = (this->*(it->second))(ref);
    } else if (auto builtin = observe_builtin(kind, ref, [this](const json& r) { return module_ref(r); })) {
      obs = *builtin;
    } else {
      throw Unsupported("observe: unknown kind of observation in " + body.dump());
    }
    observations_[body.at("as").get<std::string>()] = obs;
  }

  static std::vector<std::string> names_of(const nn::NamedTensors& items) {
    std::vector<std::string> out;
    for (const auto& item : items) out.push_back(item.first);
    return out;
  }

  json observe_named_parameters(const json& ref) { return named_tensors_json(model(ref).named_parameters()); }
  json observe_parameter_fqns(const json& ref) { return strings_json(names_of(model(ref).named_parameters())); }
  json observe_named_buffers(const json& ref) { return named_tensors_json(model(ref).named_buffers()); }
  json observe_buffer_fqns(const json& ref) { return strings_json(names_of(model(ref).named_buffers())); }
  json observe_state_dict(const json& ref) { return named_tensors_json(model(ref).state_dict()); }
  json observe_state_dict_keys(const json& ref) { return strings_json(names_of(model(ref).state_dict())); }

  json observe_module_fqns(const json& ref) {
    std::vector<std::string> out;
    for (const auto& item : model(ref).named_modules()) out.push_back(item.first);
    return strings_json(out);
  }

  json observe_grads(const json& ref) {
    nn::NamedTensors grads;
    for (const auto& [fqn, t] : model(ref).named_parameters()) {
      if (t.grad().defined()) grads.emplace_back(fqn, t.grad());
    }
    return named_tensors_json(grads);
  }

  json observe_value_named(const json& ref) { return observe_value(value(ref)); }
  json observe_probes(const json&) { return strings_json(probes_); }

  json observe_tracker_events(const json& ref) {
    tracker(ref);
    return json_value(tracker_events_[ref.get<std::string>()]);
  }

  json observe_tracker_state(const json& ref) {
    tracker(ref);
    return json_value(tracker_state(ref.get<std::string>()));
  }

  json observe_registry(const json& ref) {
    auto registry = composable::get_registry(*module_ref(ref));
    json names = nullptr;
    if (registry) {
      names = json::array();
      for (const auto& item : *registry) names.push_back(item.first);
    }
    return json_value(names);
  }

  // Per module: its registry's items as identities (numbered across all the
  // modules), or null for a module without a registry.
  json observe_registry_identity(const json& refs) {
    std::vector<std::optional<composable::Registry>> registries;
    std::vector<const void*> items;
    for (const auto& ref : refs) {
      registries.push_back(composable::get_registry(*module_ref(ref)));
      if (registries.back()) {
        for (const auto& item : *registries.back()) items.push_back(item.second.get());
      }
    }
    const json ids = identities(items);
    json out = json::array();
    std::size_t next = 0;
    for (const auto& registry : registries) {
      if (!registry) {
        out.push_back(nullptr);
        continue;
      }
      json list = json::array();
      for (std::size_t j = 0; j < registry->size(); ++j) list.push_back(ids[next++]);
      out.push_back(list);
    }
    return json_value(out);
  }

  json observe_state_identity(const json& spec) {
    const composable::Contract& api = api_named(spec.at("api"));
    std::vector<const void*> states;
    for (const auto& ref : spec.at("modules")) states.push_back(api.state(*module_ref(ref)).get());
    return json_value(identities(states));
  }

  // type(api.state(module)).__name__: a test API's state class, or a built-in API's.
  json observe_state_type(const json& spec) {
    const composable::Contract& api = api_named(spec.at("api"));
    auto state = api.state(*module_ref(spec.at("module")));
    if (!state) return json_value(nullptr);
    if (auto dict = std::dynamic_pointer_cast<DictState>(state)) return json_value(dict->class_name);
    return json_value(builtin_state_class(spec.at("api").get<std::string>()));
  }

  json observe_state(const json& spec) {
    auto state = api_named(spec.at("api")).state_as<DictState>(*module_ref(spec.at("module")));
    json value = nullptr;
    if (state) {
      auto it = state->values.find(spec.at("key").get<std::string>());
      if (it != state->values.end()) value = it->second;
    }
    return json_value(value);
  }

  json observe_value(const nn::Value& v) {
    if (v.is_tensor()) return values::encode_tensor(v.tensor());
    if (v.is_sequence() || v.is_dict()) {
      json list = json::array();
      std::function<void(const nn::Value&, const std::string&)> flatten = [&](const nn::Value& x,
                                                                              const std::string& p) {
        auto join = [&](const std::string& k) { return p.empty() ? k : p + "." + k; };
        if (x.is_tensor()) {
          list.push_back(json::array({p, values::encode_tensor(x.tensor())}));
        } else if (x.is_sequence()) {
          for (std::size_t i = 0; i < x.items().size(); ++i) flatten(x.items()[i], join(std::to_string(i)));
        } else if (x.is_dict()) {
          for (const auto& [k, item] : x.dict_items()) flatten(item, join(k));
        }
      };
      flatten(v, "");
      return {{"kind", "named_tensors"}, {"items", list}};
    }
    switch (v.kind()) {
      case nn::Value::Kind::Int: return {{"kind", "json"}, {"value", v.to_int()}};
      case nn::Value::Kind::Double: return {{"kind", "json"}, {"value", v.to_double()}};
      case nn::Value::Kind::Bool: return {{"kind", "json"}, {"value", v.to_bool()}};
      case nn::Value::Kind::String: return {{"kind", "json"}, {"value", v.to_string()}};
      default: return {{"kind", "json"}, {"value", nullptr}};
    }
  }

  std::uint64_t seed_of(const json& body) const {
    const json seed = body.value("seed", json(0));
    if (seed == "step") return static_cast<std::uint64_t>(step_index_);
    if (seed == "rank") return static_cast<std::uint64_t>(rank_);
    return seed.get<std::uint64_t>();
  }

  const fixtures::Fixture& fixture_named(const std::string& name) const {
    auto it = fixtures_.find(name);
    if (it == fixtures_.end()) throw std::invalid_argument("fixture '" + name + "' was not sent with the case");
    return it->second;
  }

  // A model of the case or one of its submodules (`m.sub.0`).
  nn::Module& model(const json& name) { return *module_ref(name); }

  const nn::Value& value(const json& name) {
    auto it = values_.find(name.get<std::string>());
    if (it == values_.end()) throw std::invalid_argument("no value named '" + name.get<std::string>() + "'");
    return it->second;
  }

  const json& message_;
  int rank_;
  int world_size_;
  distributed::ProcessGroup* process_group_;
  std::map<std::string, fixtures::Fixture> fixtures_;
  std::map<std::string, std::shared_ptr<nn::Module>> models_;
  std::map<std::string, nn::Value> values_;
  std::map<std::string, fixtures::Input> inputs_;
  std::vector<std::string> probes_;
  std::vector<std::shared_ptr<void>> hook_handles_;  // keep the post-accumulate-grad hooks alive
  std::map<std::string, std::shared_ptr<composable::Contract>> apis_;
  std::map<std::string, std::unique_ptr<tools::ModTracker>> trackers_;
  std::map<std::string, json> tracker_events_;
  std::map<std::string, bool> with_parents_;  // trackers whose hook events carry the whole parents set
  std::vector<std::string> active_trackers_;
  json observations_ = json::object();
  std::vector<nn::HookHandle> global_hooks_;  // removed when the case ends
  int64_t step_index_ = 0;
  static constexpr int64_t kMaxSteps = 10000;
  int64_t steps_run_ = 0;
};

}  // namespace

Session::Session(int rank, int world_size, std::string backend, std::string device)
    : rank_(rank), world_size_(world_size), backend_(std::move(backend)), device_(std::move(device)) {
  // Asked for what it lacks, the adapter still says hello (listing what it has)
  // without a process group; the runner then reports every case unsupported.
  if (!serves_request()) return;
  process_group_ = distributed::ProcessGroup::from_env(backend_);
  distributed::set_default_process_group(process_group_);
}

// Models live on the CPU, so the only usable backend is Gloo (NCCL needs CUDA tensors).
bool Session::serves_request() const { return backend_ == "gloo" && device_ == "cpu"; }

// A session without a group (asked for what it lacks) never set the default.
Session::~Session() {
  if (process_group_) distributed::set_default_process_group(nullptr);
}

json Session::hello() const {
  return {{"name", kName},
          {"version", kVersion},
          {"capabilities",
           json::array({"fixtures", "hooks", "contract", "mod_tracker", "checkpoint", "replicate", "fully_shard"})},
          {"backends", json::array({"gloo"})},
          {"devices", json::array({"cpu"})},
          {"build", {{"libtorch", TORCH_VERSION}, {"cuda", nullptr}}},
          {"rank", rank_},
          {"world_size", world_size_}};
}

json Session::run(const json& message) {
  const auto start = std::chrono::steady_clock::now();
  json result = {{"type", "result"},
                 {"case", message.at("case").value("id", "")},
                 {"rank", rank_},
                 {"observations", json::object()},
                 {"error", nullptr}};
  if (!serves_request()) {
    result["error"] = {{"kind", "unsupported"}, {"step", ""},
                       {"message", std::string(kName) + " runs on backend gloo and device cpu, not " +
                                       backend_ + " and " + device_}};
    result["duration_s"] = 0.0;
    return result;
  }
  try {
    CaseRun run(message, rank_, world_size_, process_group_.get());
    result["error"] = run.execute();
    result["observations"] = run.observations();
  } catch (const std::exception& e) {
    result["error"] = {{"kind", "invalid_argument"}, {"message", e.what()}, {"step", ""}};
  }
  // Clean state between cases: nothing a case installed may outlive it.
  if (nn::global_hook_count() != 0 && result["error"].is_null()) {
    result["error"] = {{"kind", "runtime_error"},
                       {"message", std::to_string(nn::global_hook_count()) +
                                       " global module hooks outlived the case"},
                       {"step", ""}};
  }
  result["duration_s"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace ccts::adapter
