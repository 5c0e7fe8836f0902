#include "import.h"

#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>

#include <optional>

#include "ebm/error.h"
#include "ebm/network.h"
#include "export.h"

namespace ebm::train {

namespace {

using nlohmann::json;
namespace jit = torch::jit;

// A child module and what its forward graph computes, with calls inlined and constants folded,
// so scripted modules (hyper-parameters as constants) and traced ones (constants in the trace)
// read the same way.
struct Child {
  std::string index, type;
  jit::Module module;
  std::shared_ptr<jit::Graph> graph;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error("child " + index + " (" + type + "): " + what);
  }

  // The first node of one of `kinds`; its inputs are read with the helpers below.
  jit::Node* op(std::initializer_list<const char*> kinds) const {
    for (jit::Node* n : graph->nodes())
      for (const char* k : kinds)
        if (n->kind() == c10::Symbol::fromQualString(k)) return n;
    std::string names;
    for (const char* k : kinds) names += std::string(names.empty() ? "" : " or ") + k;
    fail("its forward does not call " + names + " (unsupported variant)");
  }

  c10::IValue constant(jit::Node* n, size_t i) const {
    const std::optional<c10::IValue> v = jit::toIValue(n->input(i));
    if (!v)
      fail("argument " + std::to_string(i) + " of " + n->kind().toQualString() +
           " is not a constant");
    return *v;
  }
  std::vector<int64_t> ints(jit::Node* n, size_t i) const {
    const c10::IValue v = constant(n, i);
    if (v.isInt()) return {v.toInt()};
    if (!v.isIntList()) fail("argument " + std::to_string(i) + " is not a list of integers");
    return v.toIntVector();
  }
  torch::Tensor tensor(const char* name, bool required = true) const {
    // A traced module keeps no attribute for an absent bias; a scripted one keeps None.
    if (!module.hasattr(name)) {
      if (required) fail(std::string("has no attribute '") + name + "'");
      return {};
    }
    const c10::IValue v = module.attr(name);
    if (v.isNone()) {
      if (required) fail(std::string("has no ") + name);
      return {};
    }
    return v.toTensor().detach().to(torch::kFloat32).contiguous();
  }
};

std::pair<int64_t, int64_t> pair_of(const Child& c, const std::vector<int64_t>& v,
                                    const char* what) {
  if (v.size() == 1) return {v[0], v[0]};
  if (v.size() == 2) return {v[0], v[1]};
  c.fail(std::string(what) + " must have one or two values");
}

Tensor to_runtime(const std::string& name, const torch::Tensor& t) {
  Tensor out;
  out.name = name;
  out.shape = t.sizes().vec();
  out.data.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  return out;
}

// The Sequential to walk: the module itself, or its only child when that is the Sequential.
jit::Module sequential_of(const jit::Module& m) {
  std::vector<jit::NameModule> kids;
  for (const jit::NameModule& k : m.named_children()) kids.push_back(k);
  if (kids.size() == 1 && kids[0].value.type()->name() &&
      kids[0].value.type()->name()->name() == "Sequential")
    return kids[0].value;
  return m;
}

}  // namespace

ImportResult import_torchscript(const std::string& path, const ImportOptions& opt) {
  jit::Module module;
  try {
    module = jit::load(path);
  } catch (const c10::Error& e) {
    throw Error("'" + path + "' is not a TorchScript model: " + e.what_without_backtrace());
  }
  module.eval();  // batch norm in inference form, dropout off
  const jit::Module seq = sequential_of(module);

  json layers = json::array();
  std::vector<std::vector<torch::Tensor>> layer_tensors;  // in role order of each layer
  ImportResult res;
  std::optional<std::vector<int64_t>> pending_pad;  // ZeroPad2d: [left, right, top, bottom]
  std::string pad_owner;
  auto take_pad = [&](json& layer, const Child& c, std::vector<int64_t> sym) {
    // sym: the layer's own symmetric padding [h, w]; an earlier ZeroPad2d adds to it.
    std::vector<int64_t> p = {sym[0], sym[1], sym[0], sym[1]};  // top, left, bottom, right
    if (pending_pad) {
      p[0] += (*pending_pad)[2];
      p[1] += (*pending_pad)[0];
      p[2] += (*pending_pad)[3];
      p[3] += (*pending_pad)[1];
      pending_pad.reset();
    }
    (void)c;
    layer["padding"] = p;
  };

  for (const jit::NameModule& nm : seq.named_children()) {
    Child c;
    c.index = nm.name;
    c.module = nm.value;
    c.type = nm.value.type()->name() ? nm.value.type()->name()->name() : "?";
    if (!c.module.find_method("forward")) c.fail("has no forward method");
    c.graph = c.module.get_method("forward").graph()->copy();
    jit::Inline(*c.graph);
    jit::ConstantPropagation(c.graph);
    if (pending_pad && c.type != "Conv2d" && c.type != "AvgPool2d")
      c.fail("follows ZeroPad2d " + pad_owner +
             "; zero padding must come right before a Conv2d "
             "or AvgPool2d");

    json layer;
    std::vector<torch::Tensor> tensors;
    if (c.type == "Conv2d") {
      jit::Node* n = c.op({"aten::conv2d", "aten::_convolution"});
      const bool full = n->kind() == c10::Symbol::fromQualString("aten::_convolution");
      if (full && jit::constant_as<bool>(n->input(6)).value_or(true))
        c.fail("transposed convolution");
      const size_t groups_at = full ? 8 : 6;
      if (c.constant(n, groups_at).toInt() != 1) c.fail("grouped convolution is not supported");
      const auto dil = pair_of(c, c.ints(n, 5), "dilation");
      if (dil.first != 1 || dil.second != 1) c.fail("dilated convolution is not supported");
      const torch::Tensor w = c.tensor("weight"), b = c.tensor("bias", false);
      const auto stride = pair_of(c, c.ints(n, 3), "stride");
      layer = {{"type", "conv2d"},
               {"in_channels", w.size(1)},
               {"out_channels", w.size(0)},
               {"kernel", {w.size(2), w.size(3)}},
               {"stride", {stride.first, stride.second}},
               {"bias", b.defined()}};
      const c10::IValue pad = c.constant(n, 4);
      if (pad.isString()) {
        if (pad.toStringRef() == "valid") {
          take_pad(layer, c, {0, 0});
        } else {  // PyTorch's "same" (stride 1): the odd pixel goes bottom/right, as TensorFlow's
          if (pending_pad) c.fail("padding='same' after a ZeroPad2d is not supported");
          layer["padding"] = "same";
        }
      } else {
        const auto p = pair_of(c, c.ints(n, 4), "padding");
        take_pad(layer, c, {p.first, p.second});
      }
      tensors = {w};
      if (b.defined()) tensors.push_back(b);
    } else if (c.type == "ZeroPad2d" || c.type == "ConstantPad2d") {
      jit::Node* n = c.op({"aten::pad", "aten::constant_pad_nd"});
      const size_t value_at = n->kind() == c10::Symbol::fromQualString("aten::pad") ? 3 : 2;
      const c10::IValue value = c.constant(n, value_at);
      if (!value.isNone() && value.toDouble() != 0.0) c.fail("only zero padding is supported");
      std::vector<int64_t> p = c.ints(n, 1);
      if (p.size() != 4) c.fail("padding must have 4 values (left, right, top, bottom)");
      for (int64_t v : p)
        if (v < 0) c.fail("negative padding (cropping) is not supported");
      if (pending_pad)
        for (size_t k = 0; k < 4; ++k) p[k] += (*pending_pad)[k];
      pending_pad = p;
      pad_owner = c.index;
      res.layers.push_back(c.index + " " + c.type + " -> padding of the next layer");
      continue;
    } else if (c.type == "BatchNorm2d") {
      jit::Node* n = c.op({"aten::batch_norm"});
      const torch::Tensor mean = c.tensor("running_mean", false),
                          var = c.tensor("running_var", false);
      if (!mean.defined() || !var.defined())
        c.fail(
            "has no running statistics (track_running_stats=False); only inference-form batch "
            "norm can be converted");
      torch::Tensor w = c.tensor("weight", false), b = c.tensor("bias", false);
      if (!w.defined()) w = torch::ones_like(mean);
      if (!b.defined()) b = torch::zeros_like(mean);
      layer = {{"type", "batchnorm"}, {"eps", c.constant(n, 7).toDouble()}};
      tensors = {w, b, mean, var};
    } else if (c.type == "SiLU") {
      c.op({"aten::silu"});
      layer = {{"type", "swish"}};
    } else if (c.type == "LeakyReLU") {
      jit::Node* n = c.op({"aten::leaky_relu"});
      layer = {{"type", "leaky_relu"}, {"slope", c.constant(n, 1).toDouble()}};
    } else if (c.type == "ReLU") {
      c.op({"aten::relu"});
      layer = {{"type", "leaky_relu"}, {"slope", 0.0}};
    } else if (c.type == "AvgPool2d") {
      jit::Node* n = c.op({"aten::avg_pool2d"});
      const auto k = pair_of(c, c.ints(n, 1), "kernel_size");
      const std::vector<int64_t> sv = c.ints(n, 2);
      const auto s = sv.empty() ? k : pair_of(c, sv, "stride");
      const auto p = pair_of(c, c.ints(n, 3), "padding");
      if (c.constant(n, 4).toBool()) c.fail("ceil_mode=True is not supported");
      if (!c.constant(n, 5).toBool() && (p.first > 0 || p.second > 0))
        c.fail(
            "count_include_pad=False with padding is not supported (the runtime divides by the "
            "full window)");
      if (!c.constant(n, 6).isNone()) c.fail("divisor_override is not supported");
      layer = {
          {"type", "avgpool"}, {"kernel", {k.first, k.second}}, {"stride", {s.first, s.second}}};
      if (pending_pad && !c.constant(n, 5).toBool())
        c.fail("count_include_pad=False after a ZeroPad2d is not supported");
      take_pad(layer, c, {p.first, p.second});
    } else if (c.type == "Flatten") {
      jit::Node* n = c.op({"aten::flatten"});
      if (c.constant(n, 1).toInt() != 1 || c.constant(n, 2).toInt() != -1)
        c.fail("only Flatten(start_dim=1, end_dim=-1) is supported");
      layer = {{"type", "flatten"}};
    } else if (c.type == "Linear") {
      const torch::Tensor w = c.tensor("weight"), b = c.tensor("bias", false);
      layer = {{"type", "dense"},
               {"in_features", w.size(1)},
               {"out_features", w.size(0)},
               {"bias", b.defined()}};
      tensors = {w};
      if (b.defined()) tensors.push_back(b);
    } else if (c.type == "Identity" || c.type == "Dropout" || c.type == "Dropout2d") {
      res.layers.push_back(c.index + " " + c.type + " -> skipped (identity at inference)");
      continue;
    } else {
      c.fail(
          "unsupported module; supported: Conv2d, ZeroPad2d, BatchNorm2d, SiLU, LeakyReLU, "
          "ReLU, AvgPool2d, Flatten, Linear, Identity, Dropout");
    }
    res.layers.push_back(c.index + " " + c.type + " -> " + layer["type"].get<std::string>());
    layers.push_back(layer);
    layer_tensors.push_back(std::move(tensors));
  }
  if (pending_pad) throw Error("ZeroPad2d " + pad_owner + " is the last child; nothing to pad");
  if (layers.empty()) throw Error("'" + path + "' has no supported layers");

  Model& m = res.model;
  m.kind = opt.kind;
  m.labels = opt.labels;
  try {
    m.arch = resolve_architecture(opt.input, layers);
  } catch (const Error& e) {
    throw Error(std::string("the converted layers do not fit input ") + opt.input.str() + ": " +
                e.what());
  }
  for (size_t i = 0; i < m.arch.layers.size(); ++i) {
    const std::vector<TensorRef>& refs = m.arch.layers[i].tensors;
    for (size_t k = 0; k < refs.size(); ++k) {
      torch::Tensor t = layer_tensors[i][k];
      if (t.sizes().vec() != refs[k].shape)
        throw Error("layer " + std::to_string(i) + ": tensor " + refs[k].role + " has shape " +
                    c10::str(t.sizes()) + " where the layer needs another");
      // A score model (high = real) becomes an energy model by negating its last layer.
      if (opt.score && i + 1 == m.arch.layers.size()) t = -t;
      m.tensors.push_back(to_runtime(refs[k].name, t));
    }
  }
  validate_model(m);

  // Both on the same random images: refuse a model the runtime would compute differently.
  torch::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2024);
  const int count = 8;
  const Shape& s = opt.input;
  const torch::Tensor x = torch::rand({count, s.c, s.h, s.w}, gen, torch::kFloat32) * 2.0 - 1.0;
  torch::Tensor expected;
  try {
    expected = module.forward({x}).toTensor().reshape({count, -1}).to(torch::kFloat32);
  } catch (const c10::Error& e) {
    throw Error("running '" + path + "' on " + s.str() +
                " images failed: " + e.what_without_backtrace());
  }
  if (opt.score) expected = -expected;
  Network rt(m);
  if (expected.size(1) != rt.outputs())
    throw Error("the TorchScript model outputs " + std::to_string(expected.size(1)) +
                " numbers per image, the converted one " + std::to_string(rt.outputs()));
  torch::Tensor got = torch::empty({count, int64_t(rt.outputs())}, torch::kFloat32);
  rt.logits(x.data_ptr<float>(), count, got.data_ptr<float>());
  res.max_error = max_relative_error(got, expected);
  if (!(res.max_error <= opt.tolerance))
    throw Error("the converted model disagrees with '" + path +
                "' on random images: max relative "
                "error " +
                std::to_string(res.max_error) + " > " + std::to_string(opt.tolerance) +
                "; not writing it");
  return res;
}

}  // namespace ebm::train
