#include "ebm/architecture.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <dirent.h>
#include <map>
#include <set>

#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/json_util.h"

#ifndef EBM_DEFAULT_PRESETS_DIR
#define EBM_DEFAULT_PRESETS_DIR "models/presets"
#endif

namespace ebm {

using nlohmann::json;

std::string Shape::str() const {
  return std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
}

const char* layer_kind_name(LayerKind k) {
  switch (k) {
    case LayerKind::kConv2d: return "conv2d";
    case LayerKind::kBatchNorm: return "batchnorm";
    case LayerKind::kAffine: return "affine";
    case LayerKind::kSwish: return "swish";
    case LayerKind::kLeakyRelu: return "leaky_relu";
    case LayerKind::kAvgPool: return "avgpool";
    case LayerKind::kFlatten: return "flatten";
    case LayerKind::kDense: return "dense";
    case LayerKind::kAdd: return "add";
    case LayerKind::kUpsample: return "upsample";
    case LayerKind::kSpaceToDepth: return "space_to_depth";
    case LayerKind::kDepthToSpace: return "depth_to_space";
  }
  return "?";
}

bool Architecture::is_graph() const {
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].kind == LayerKind::kAdd || layers[i].from != int(i) - 1) return true;
  return false;
}

const TensorRef* LayerSpec::tensor(const std::string& role) const {
  for (const TensorRef& t : tensors)
    if (t.role == role) return &t;
  return nullptr;
}

int64_t Architecture::parameter_count() const {
  int64_t n = 0;
  for (const LayerSpec& l : layers)
    for (const TensorRef& t : l.tensors) {
      int64_t k = 1;
      for (int64_t d : t.shape) k *= d;
      n += k;
    }
  return n;
}

namespace {

const std::vector<std::pair<std::string, LayerKind>>& kinds() {
  static const std::vector<std::pair<std::string, LayerKind>> k = {
      {"conv2d", LayerKind::kConv2d},       {"batchnorm", LayerKind::kBatchNorm},
      {"affine", LayerKind::kAffine},       {"swish", LayerKind::kSwish},
      {"leaky_relu", LayerKind::kLeakyRelu}, {"avgpool", LayerKind::kAvgPool},
      {"flatten", LayerKind::kFlatten},     {"dense", LayerKind::kDense},
      {"add", LayerKind::kAdd},             {"upsample", LayerKind::kUpsample},
      {"space_to_depth", LayerKind::kSpaceToDepth}, {"depth_to_space", LayerKind::kDepthToSpace}};
  return k;
}

std::vector<std::string> allowed_keys(LayerKind k) {
  switch (k) {
    case LayerKind::kConv2d:
      return {"in_channels", "out_channels", "kernel", "stride", "padding", "bias"};
    case LayerKind::kDense: return {"in_features", "out_features", "bias"};
    case LayerKind::kBatchNorm: return {"channels", "eps"};
    case LayerKind::kAffine: return {"channels"};
    case LayerKind::kLeakyRelu: return {"slope"};
    case LayerKind::kAvgPool: return {"kernel", "stride", "padding"};
    case LayerKind::kAdd: return {"skip", "sigma_max"};
    case LayerKind::kUpsample:
    case LayerKind::kSpaceToDepth:
    case LayerKind::kDepthToSpace: return {"factor"};
    case LayerKind::kSwish:
    case LayerKind::kFlatten: return {};
  }
  return {};
}

constexpr const char* kKnownKinds =
    "conv2d, batchnorm, affine, swish, leaky_relu, avgpool, flatten, dense, add, upsample, "
    "space_to_depth, depth_to_space";

std::vector<std::string> tensor_roles(LayerKind k, bool bias) {
  switch (k) {
    case LayerKind::kConv2d:
    case LayerKind::kDense:
      return bias ? std::vector<std::string>{"weight", "bias"} : std::vector<std::string>{"weight"};
    case LayerKind::kBatchNorm: return {"weight", "bias", "running_mean", "running_var"};
    case LayerKind::kAffine: return {"scale", "shift"};
    default: return {};
  }
}

// Errors name the layer so a user can find it in the JSON.
struct LayerContext {
  size_t index;
  std::string kind;
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("layer " + std::to_string(index) + " (" + kind + "): " + what);
  }
};

int positive_int(const LayerContext& ctx, const json& v, const std::string& key, int max) {
  if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > max)
    ctx.fail("\"" + key + "\" must be an integer from 1 to " + std::to_string(max) + ", got " +
             v.dump());
  return int(v.get<int64_t>());
}

int nonneg_int(const LayerContext& ctx, const json& v, const std::string& key, int max) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > max)
    ctx.fail("\"" + key + "\" entries must be integers from 0 to " + std::to_string(max) +
             ", got " + v.dump());
  return int(v.get<int64_t>());
}

// "kernel": 3 or [3, 5] -> (h, w)
std::pair<int, int> pair_of(const LayerContext& ctx, const json& v, const std::string& key,
                            int max) {
  if (v.is_array()) {
    if (v.size() != 2) ctx.fail("\"" + key + "\" must be an integer or [height, width]");
    return {positive_int(ctx, v[0], key, max), positive_int(ctx, v[1], key, max)};
  }
  const int k = positive_int(ctx, v, key, max);
  return {k, k};
}

// TensorFlow's "same": output = ceil(input / stride), the odd pixel of padding goes bottom/right.
void same_padding(int in, int k, int s, int* lo, int* hi) {
  const int out = (in + s - 1) / s;
  const int total = std::max((out - 1) * s + k - in, 0);
  *lo = total / 2;
  *hi = total - *lo;
}

Padding parse_padding(const LayerContext& ctx, const json& v, const Shape& in, int kh, int kw,
                      int sh, int sw) {
  Padding p;
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "valid") return p;
    if (s == "same") {
      same_padding(in.h, kh, sh, &p.top, &p.bottom);
      same_padding(in.w, kw, sw, &p.left, &p.right);
      return p;
    }
    ctx.fail("\"padding\" must be \"same\", \"valid\", an integer, [h, w] or "
             "[top, left, bottom, right], got \"" + s + "\"");
  }
  if (v.is_number()) {
    p.top = p.bottom = p.left = p.right = nonneg_int(ctx, v, "padding", kMaxKernel);
    return p;
  }
  if (v.is_array() && v.size() == 2) {
    p.top = p.bottom = nonneg_int(ctx, v[0], "padding", kMaxKernel);
    p.left = p.right = nonneg_int(ctx, v[1], "padding", kMaxKernel);
    return p;
  }
  if (v.is_array() && v.size() == 4) {
    p.top = nonneg_int(ctx, v[0], "padding", kMaxKernel);
    p.left = nonneg_int(ctx, v[1], "padding", kMaxKernel);
    p.bottom = nonneg_int(ctx, v[2], "padding", kMaxKernel);
    p.right = nonneg_int(ctx, v[3], "padding", kMaxKernel);
    return p;
  }
  ctx.fail("\"padding\" must be \"same\", \"valid\", an integer, [h, w] or "
           "[top, left, bottom, right], got " + v.dump());
}

// Output size of a sliding window, or a clear error when the window does not fit.
int window_out(const LayerContext& ctx, int in, int lo, int hi, int k, int s, const char* axis) {
  const int padded = in + lo + hi;
  if (padded < k)
    ctx.fail(std::string("kernel ") + std::to_string(k) + " is larger than the padded " + axis +
             " " + std::to_string(padded));
  return (padded - k) / s + 1;
}

void check_activation(const LayerContext& ctx, const Shape& s) {
  if (s.c < 1 || s.h < 1 || s.w < 1 || s.h > kMaxSpatial || s.w > kMaxSpatial ||
      s.size() > kMaxActivation)
    ctx.fail("output shape " + s.str() + " is outside the supported range");
}

void expect_match(const LayerContext& ctx, const json& layer, const char* key, int actual) {
  if (!layer.contains(key)) return;
  const json& v = layer[key];
  if (!v.is_number_integer() || v.get<int64_t>() != actual)
    ctx.fail(std::string("\"") + key + "\" is " + v.dump() + " but the incoming shape gives " +
             std::to_string(actual));
}

// `in` is the shape of the layer the entry reads, `skip` that of an add layer's second operand.
LayerSpec resolve_layer(size_t index, const json& layer, const Shape& in, const Shape& skip) {
  LayerContext ctx{index, "?"};
  if (!layer.is_object()) ctx.fail("a layer must be a JSON object, got " + layer.dump());
  if (!layer.contains("type") || !layer["type"].is_string())
    ctx.fail(std::string("missing \"type\" (one of ") + kKnownKinds + ")");
  ctx.kind = layer["type"].get<std::string>();
  LayerSpec l;
  auto it = std::find_if(kinds().begin(), kinds().end(),
                         [&](const auto& p) { return p.first == ctx.kind; });
  if (it == kinds().end())
    ctx.fail(std::string("unknown layer type; this runtime knows ") + kKnownKinds);
  l.kind = it->second;
  l.in = in;

  const std::vector<std::string> keys = allowed_keys(l.kind);
  for (const auto& [key, value] : layer.items()) {
    (void)value;
    if (key == "type" || key == "tensors" || key == "id" || key == "from") continue;
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) ctx.fail("unknown key \"" + key + "\"");
  }
  if (layer.contains("bias")) {
    if (!layer["bias"].is_boolean()) ctx.fail("\"bias\" must be true or false");
    l.bias = layer["bias"].get<bool>();
  }

  switch (l.kind) {
    case LayerKind::kConv2d: {
      if (!layer.contains("out_channels")) ctx.fail("missing \"out_channels\"");
      expect_match(ctx, layer, "in_channels", in.c);
      const int out_c = positive_int(ctx, layer["out_channels"], "out_channels", kMaxChannels);
      if (!layer.contains("kernel")) ctx.fail("missing \"kernel\"");
      std::tie(l.kernel_h, l.kernel_w) = pair_of(ctx, layer["kernel"], "kernel", kMaxKernel);
      if (layer.contains("stride"))
        std::tie(l.stride_h, l.stride_w) = pair_of(ctx, layer["stride"], "stride", kMaxKernel);
      if (layer.contains("padding"))
        l.pad = parse_padding(ctx, layer["padding"], in, l.kernel_h, l.kernel_w, l.stride_h,
                              l.stride_w);
      l.out = {out_c,
               window_out(ctx, in.h, l.pad.top, l.pad.bottom, l.kernel_h, l.stride_h, "height"),
               window_out(ctx, in.w, l.pad.left, l.pad.right, l.kernel_w, l.stride_w, "width")};
      break;
    }
    case LayerKind::kAvgPool: {
      if (!layer.contains("kernel")) ctx.fail("missing \"kernel\" (an integer, [h, w] or \"global\")");
      const json& k = layer["kernel"];
      if (k.is_string() && k.get<std::string>() == "global") {
        if (in.h > kMaxKernel || in.w > kMaxKernel)
          ctx.fail("global pooling over " + in.str() + " exceeds the kernel limit of " +
                   std::to_string(kMaxKernel));
        l.kernel_h = in.h;
        l.kernel_w = in.w;
      } else {
        std::tie(l.kernel_h, l.kernel_w) = pair_of(ctx, k, "kernel", kMaxKernel);
      }
      l.stride_h = l.kernel_h;
      l.stride_w = l.kernel_w;
      if (layer.contains("stride"))
        std::tie(l.stride_h, l.stride_w) = pair_of(ctx, layer["stride"], "stride", kMaxKernel);
      if (layer.contains("padding"))
        l.pad = parse_padding(ctx, layer["padding"], in, l.kernel_h, l.kernel_w, l.stride_h,
                              l.stride_w);
      l.out = {in.c,
               window_out(ctx, in.h, l.pad.top, l.pad.bottom, l.kernel_h, l.stride_h, "height"),
               window_out(ctx, in.w, l.pad.left, l.pad.right, l.kernel_w, l.stride_w, "width")};
      break;
    }
    case LayerKind::kDense: {
      if (in.h != 1 || in.w != 1)
        ctx.fail("needs a flat input but receives " + in.str() + "; put a flatten layer before it");
      if (!layer.contains("out_features")) ctx.fail("missing \"out_features\"");
      expect_match(ctx, layer, "in_features", in.c);
      l.out = {positive_int(ctx, layer["out_features"], "out_features", kMaxChannels), 1, 1};
      break;
    }
    case LayerKind::kBatchNorm:
    case LayerKind::kAffine: {
      expect_match(ctx, layer, "channels", in.c);
      if (layer.contains("eps")) {
        const json& e = layer["eps"];
        if (!e.is_number() || !(e.get<double>() > 0) || e.get<double>() > 1)
          ctx.fail("\"eps\" must be a number in (0, 1], got " + e.dump());
        l.eps = e.get<float>();
      }
      l.out = in;
      break;
    }
    case LayerKind::kLeakyRelu: {
      if (layer.contains("slope")) {
        const json& s = layer["slope"];
        if (!s.is_number() || std::abs(s.get<double>()) > 1)
          ctx.fail("\"slope\" must be a number in [-1, 1], got " + s.dump());
        l.slope = s.get<float>();
      }
      l.out = in;
      break;
    }
    case LayerKind::kSwish: l.out = in; break;
    case LayerKind::kAdd:
      if (skip != in)
        ctx.fail("adds a " + skip.str() + " skip to a " + in.str() + " input; the shapes must match");
      if (layer.contains("sigma_max")) {
        const json& v = layer["sigma_max"];
        if (!v.is_number() || !(v.get<double>() > 0) || !(v.get<double>() <= 1e6))
          ctx.fail("\"sigma_max\" must be a noise level > 0 (up to 1e6), got " + v.dump());
        l.sigma_max = v.get<float>();
      }
      l.out = in;
      break;
    case LayerKind::kUpsample:
    case LayerKind::kSpaceToDepth:
    case LayerKind::kDepthToSpace: {
      if (layer.contains("factor")) l.factor = positive_int(ctx, layer["factor"], "factor", 16);
      const int f = l.factor;
      if (l.kind == LayerKind::kUpsample) {
        l.out = {in.c, in.h * f, in.w * f};
      } else if (l.kind == LayerKind::kSpaceToDepth) {
        if (in.h % f || in.w % f)
          ctx.fail("input " + in.str() + " is not divisible into " + std::to_string(f) + "x" +
                   std::to_string(f) + " blocks");
        l.out = {in.c * f * f, in.h / f, in.w / f};
      } else {
        if (in.c % (f * f))
          ctx.fail("input " + in.str() + " has channels not divisible by " + std::to_string(f * f));
        l.out = {in.c / (f * f), in.h * f, in.w * f};
      }
      break;
    }
    case LayerKind::kFlatten:
      // The incoming shape is already bounded by kMaxActivation, so its size fits an int.
      l.out = {int(in.size()), 1, 1};
      break;
  }
  check_activation(ctx, l.out);

  // Tensors: names default to layers.<i>.<role>; shapes follow from the layer.
  const std::vector<std::string> roles = tensor_roles(l.kind, l.bias);
  json names = json::object();
  if (layer.contains("tensors")) {
    names = layer["tensors"];
    if (!names.is_object()) ctx.fail("\"tensors\" must map roles to tensor names");
    for (const auto& [role, name] : names.items()) {
      if (std::find(roles.begin(), roles.end(), role) == roles.end())
        ctx.fail("unknown tensor role \"" + role + "\"");
      if (!name.is_string() || name.get<std::string>().empty())
        ctx.fail("tensor name for \"" + role + "\" must be a non-empty string");
    }
  }
  for (const std::string& role : roles) {
    TensorRef t;
    t.role = role;
    t.name = names.contains(role) ? names[role].get<std::string>()
                                  : "layers." + std::to_string(index) + "." + role;
    if (l.kind == LayerKind::kConv2d && role == "weight")
      t.shape = {l.out.c, in.c, l.kernel_h, l.kernel_w};
    else if (l.kind == LayerKind::kDense && role == "weight")
      t.shape = {l.out.c, in.c};
    else
      t.shape = {l.out.c};
    l.tensors.push_back(std::move(t));
  }
  // Weight tensors are bounded like file tensors: out * in * kh * kw with each factor bounded.
  for (const TensorRef& t : l.tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;  // each factor <= 2^16, rank <= 4: fits easily in int64
    if (n > (1ll << 28)) ctx.fail("tensor '" + t.name + "' would have " + std::to_string(n) + " elements");
  }
  return l;
}

}  // namespace

Shape parse_input_shape(const json& j) {
  if (!j.is_object()) throw Error("input shape must be {\"channels\":C,\"height\":H,\"width\":W}");
  Shape s;
  int* fields[] = {&s.c, &s.h, &s.w};
  const char* names[] = {"channels", "height", "width"};
  const int max[] = {kMaxChannels, kMaxSpatial, kMaxSpatial};
  for (int i = 0; i < 3; ++i) {
    if (!j.contains(names[i]) || !j[names[i]].is_number_integer() ||
        j[names[i]].get<int64_t>() < 1 || j[names[i]].get<int64_t>() > max[i])
      throw Error(std::string("input shape: \"") + names[i] + "\" must be an integer from 1 to " +
                  std::to_string(max[i]) + ", got " + (j.contains(names[i]) ? j[names[i]].dump() : "nothing"));
    *fields[i] = int(j[names[i]].get<int64_t>());
  }
  if (s.size() > kMaxActivation) throw Error("input shape " + s.str() + " is too large");
  return s;
}

json input_shape_json(const Shape& s) { return {{"channels", s.c}, {"height", s.h}, {"width", s.w}}; }

Architecture resolve_architecture(const Shape& input, const json& layers) {
  if (!layers.is_array()) throw Error("the layer list must be a JSON array");
  if (layers.empty()) throw Error("the layer list is empty");
  if (layers.size() > size_t(kMaxLayers))
    throw Error("the layer list has " + std::to_string(layers.size()) + " layers; the limit is " +
                std::to_string(kMaxLayers));
  Architecture a;
  a.input = input;
  std::set<std::string> names;
  std::map<std::string, int> ids = {{"input", kNetworkInput}};
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& lj = layers[i];
    // Graph edges by name, to earlier layers only.
    auto ref = [&](const char* key) {
      const json& v = lj[key];
      if (!v.is_string())
        throw Error("layer " + std::to_string(i) + ": \"" + key + "\" must name an earlier layer's "
                    "\"id\" (or \"input\"), got " + v.dump());
      auto it = ids.find(v.get<std::string>());
      if (it == ids.end())
        throw Error("layer " + std::to_string(i) + ": \"" + key + "\" names \"" +
                    v.get<std::string>() + "\", which is not the id of an earlier layer");
      return it->second;
    };
    const bool obj = lj.is_object();
    const int from = obj && lj.contains("from") ? ref("from") : int(i) - 1;
    int skip = kNetworkInput;
    const bool is_add = obj && lj.contains("type") && lj["type"] == "add";
    if (is_add) {
      if (!lj.contains("skip"))
        throw Error("layer " + std::to_string(i) + " (add): missing \"skip\" (the id of the layer "
                    "whose output is added)");
      skip = ref("skip");
    }
    auto shape_of = [&](int k) { return k == kNetworkInput ? input : a.layers[size_t(k)].out; };
    LayerSpec l = resolve_layer(i, lj, shape_of(from), shape_of(skip));
    l.from = from;
    l.skip = skip;
    if (obj && lj.contains("id")) {
      const json& v = lj["id"];
      if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>().size() > 64)
        throw Error("layer " + std::to_string(i) + ": \"id\" must be a name of 1 to 64 characters");
      l.id = v.get<std::string>();
      if (!ids.emplace(l.id, int(i)).second)
        throw Error("layer " + std::to_string(i) + ": id \"" + l.id + "\" is used twice (or is "
                    "the reserved \"input\")");
    }
    a.layers.push_back(std::move(l));
    for (const TensorRef& t : a.layers.back().tensors)
      if (!names.insert(t.name).second)
        throw Error("layer " + std::to_string(i) + ": tensor name '" + t.name +
                    "' is used by two layers");
  }
  // Each layer is within its own limits; the whole network must be too (each term below is
  // bounded by the per-layer limits, so the sums cannot overflow).
  if (const int64_t bytes = a.activation_bytes(); bytes > kMaxActivationBytesPerImage)
    throw Error("the network needs " + std::to_string(bytes) +
                " bytes of activations per image (input, every layer's output and its gradient, "
                "F32); the limit is " +
                std::to_string(kMaxActivationBytesPerImage) +
                ": use a smaller input, fewer channels or fewer layers");
  if (const int64_t macs = a.multiply_adds(); macs > kMaxMultiplyAddsPerImage)
    throw Error("the network needs " + std::to_string(macs) +
                " multiply-adds per image for one forward pass; the limit is " +
                std::to_string(kMaxMultiplyAddsPerImage) +
                ": use a smaller input, fewer channels or fewer layers");
  return a;
}

int64_t Architecture::activation_bytes() const {
  int64_t floats = input.size();
  for (const LayerSpec& l : layers) floats += 2 * l.out.size();
  return floats * int64_t(sizeof(float));
}

int64_t Architecture::multiply_adds() const {
  int64_t total = 0;
  for (const LayerSpec& l : layers) {
    switch (l.kind) {
      case LayerKind::kConv2d:
        total += l.out.size() * l.in.c * l.kernel_h * l.kernel_w;
        break;
      case LayerKind::kDense:
        total += l.in.size() * l.out.c;
        break;
      case LayerKind::kAvgPool:
        total += l.out.size() * l.kernel_h * l.kernel_w;
        break;
      default:
        total += l.out.size();  // one operation per output value
    }
  }
  return total;
}

json Architecture::layers_json() const {
  json out = json::array();
  auto name_of = [&](int k) { return k == kNetworkInput ? std::string("input") : layers[size_t(k)].id; };
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerSpec& l = layers[i];
    json j = {{"type", layer_kind_name(l.kind)}};
    if (!l.id.empty()) j["id"] = l.id;
    if (l.from != int(i) - 1) j["from"] = name_of(l.from);
    switch (l.kind) {
      case LayerKind::kConv2d:
        j["in_channels"] = l.in.c;
        j["out_channels"] = l.out.c;
        [[fallthrough]];
      case LayerKind::kAvgPool:
        j["kernel"] = {l.kernel_h, l.kernel_w};
        j["stride"] = {l.stride_h, l.stride_w};
        j["padding"] = {l.pad.top, l.pad.left, l.pad.bottom, l.pad.right};
        if (l.kind == LayerKind::kConv2d) j["bias"] = l.bias;
        break;
      case LayerKind::kDense:
        j["in_features"] = l.in.c;
        j["out_features"] = l.out.c;
        j["bias"] = l.bias;
        break;
      case LayerKind::kBatchNorm:
        j["channels"] = l.in.c;
        j["eps"] = json_float(l.eps);
        break;
      case LayerKind::kAffine: j["channels"] = l.in.c; break;
      case LayerKind::kLeakyRelu: j["slope"] = json_float(l.slope); break;
      case LayerKind::kAdd:
        j["skip"] = name_of(l.skip);
        if (l.sigma_max > 0) j["sigma_max"] = json_float(l.sigma_max);
        break;
      case LayerKind::kUpsample:
      case LayerKind::kSpaceToDepth:
      case LayerKind::kDepthToSpace: j["factor"] = l.factor; break;
      case LayerKind::kSwish:
      case LayerKind::kFlatten: break;
    }
    if (!l.tensors.empty()) {
      json t = json::object();
      for (const TensorRef& r : l.tensors) t[r.role] = r.name;
      j["tensors"] = t;
    }
    out.push_back(j);
  }
  return out;
}

bool noise_conditional(const EnergyForm& f) { return f.denoiser || f.scalar_noise; }

bool has_noise_plane(const EnergyForm& f) { return f.denoiser ? f.noise_plane : f.scalar_noise; }

Shape layers_input(const Shape& image, const EnergyForm& f) {
  Shape s = image;
  if (has_noise_plane(f)) ++s.c;
  return s;
}

Shape image_shape(const Architecture& arch, const EnergyForm& f) {
  Shape s = arch.input;
  if (has_noise_plane(f)) --s.c;
  return s;
}

std::string presets_dir() {
  if (const char* env = std::getenv("EBM_PRESETS_DIR"); env && *env) return env;
  return EBM_DEFAULT_PRESETS_DIR;
}

std::vector<std::string> list_presets() {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(presets_dir().c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) names.push_back(n.substr(0, n.size() - 5));
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Preset parse_preset(const json& j, const std::string& origin) {
  try {
    if (!j.is_object()) throw Error("a preset must be a JSON object");
    for (const char* key : {"name", "input", "layers"})
      if (!j.contains(key)) throw Error(std::string("missing \"") + key + "\"");
    Preset p;
    p.name = j["name"].get<std::string>();
    p.description = j.value("description", "");
    if (j.contains("energy")) p.energy = parse_energy_form(j["energy"]);
    p.arch = resolve_architecture(layers_input(parse_input_shape(j["input"]), p.energy), j["layers"]);
    p.layers = j["layers"];
    p.sampler = j.value("sampler", json());
    p.train = j.value("train", json());
    return p;
  } catch (const json::exception& e) {
    throw Error("preset " + origin + ": " + e.what());
  } catch (const Error& e) {
    throw Error("preset " + origin + ": " + e.what());
  }
}

Preset load_preset(const std::string& name_or_path) {
  const bool is_path = name_or_path.find('/') != std::string::npos ||
                       (name_or_path.size() > 5 &&
                        name_or_path.compare(name_or_path.size() - 5, 5, ".json") == 0);
  const std::string path = is_path ? name_or_path : presets_dir() + "/" + name_or_path + ".json";
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file(path, 1 << 20);
  } catch (const Error& e) {
    std::string known;
    for (const std::string& n : list_presets()) known += (known.empty() ? "" : ", ") + n;
    throw Error("unknown preset '" + name_or_path + "' (" + e.what() + "); presets in " +
                presets_dir() + ": " + (known.empty() ? "none" : known));
  }
  json j;
  try {
    j = json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    throw Error("preset " + path + " is not valid JSON: " + e.what());
  }
  return parse_preset(j, path);
}

}  // namespace ebm
