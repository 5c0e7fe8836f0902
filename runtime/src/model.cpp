#include "ebm/model.h"

#include <cmath>
#include <set>

#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/json_util.h"
#include "ebm/rng.h"

namespace ebm {

using nlohmann::json;

namespace meta {
constexpr const char* kFormat = "ebm.format";
constexpr const char* kKind = "ebm.kind";
constexpr const char* kLabels = "ebm.labels";
constexpr const char* kInput = "ebm.input";
constexpr const char* kLayers = "ebm.layers";
constexpr const char* kSampler = "ebm.sampler";
constexpr const char* kCard = "ebm.card";
}  // namespace meta

const char* model_kind_name(ModelKind k) {
  return k == ModelKind::kClassifier ? "classifier" : "energy";
}

const Tensor& Model::tensor(const std::string& name) const {
  for (const Tensor& t : tensors)
    if (t.name == name) return t;
  throw Error("model has no tensor '" + name + "'");
}

json Model::describe() const {
  json j = {{"kind", model_kind_name(kind)},
            {"input", input_shape_json(arch.input)},
            {"parameters", arch.parameter_count()},
            {"layers", arch.layers.size()},
            {"sampler", sampler_params_json(sampler)},
            {"card", card}};
  if (kind == ModelKind::kClassifier) j["labels"] = labels;
  return j;
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

const std::string& required(const std::map<std::string, std::string>& m, const char* key,
                            const char* hint) {
  auto it = m.find(key);
  if (it == m.end()) throw Error(std::string("metadata has no \"") + key + "\" (" + hint + ")");
  return it->second;
}

}  // namespace

void validate_model(const Model& m) {
  if (m.arch.layers.empty()) throw Error("model has no layers");
  const Shape out = m.arch.output();
  if (out.h != 1 || out.w != 1)
    throw Error("the last layer outputs " + out.str() + "; a model must end in a flat vector "
                "(add flatten and dense layers)");
  if (m.kind == ModelKind::kEnergy && out.c != 1)
    throw Error("an energy model must output one number per image, this one outputs " +
                std::to_string(out.c) + " (or set ebm.kind to \"classifier\" with labels)");
  if (m.kind == ModelKind::kClassifier) {
    if (int(m.labels.size()) != out.c)
      throw Error("classifier has " + std::to_string(m.labels.size()) + " labels but outputs " +
                  std::to_string(out.c) + " logits");
    std::set<std::string> seen;
    for (const std::string& l : m.labels)
      if (l.empty() || !seen.insert(l).second)
        throw Error("classifier labels must be non-empty and distinct, got '" + l + "' twice or empty");
    if (m.arch.layers.back().kind != LayerKind::kDense)
      throw Error("a classifier must end in a dense layer (its input is the feature vector)");
  }

  std::set<std::string> needed;
  for (size_t i = 0; i < m.arch.layers.size(); ++i) {
    for (const TensorRef& ref : m.arch.layers[i].tensors) {
      needed.insert(ref.name);
      const Tensor* t = nullptr;
      for (const Tensor& c : m.tensors)
        if (c.name == ref.name) t = &c;
      if (!t)
        throw Error("layer " + std::to_string(i) + " (" + layer_kind_name(m.arch.layers[i].kind) +
                    ") needs tensor '" + ref.name + "' with shape " + shape_str(ref.shape) +
                    ", which the file does not have");
      if (t->shape != ref.shape)
        throw Error("tensor '" + ref.name + "' has shape " + shape_str(t->shape) + " but layer " +
                    std::to_string(i) + " (" + layer_kind_name(m.arch.layers[i].kind) +
                    ") needs " + shape_str(ref.shape));
      if (int64_t(t->data.size()) != t->numel())
        throw Error("tensor '" + ref.name + "' holds " + std::to_string(t->data.size()) +
                    " values for shape " + shape_str(t->shape));
      for (size_t k = 0; k < t->data.size(); ++k)
        if (!std::isfinite(t->data[k]))
          throw Error("tensor '" + ref.name + "' holds a non-finite value at flat index " +
                      std::to_string(k));
      if (m.arch.layers[i].kind == LayerKind::kBatchNorm && ref.role == "running_var")
        for (float v : t->data)
          if (v < 0) throw Error("tensor '" + ref.name + "' (a batch-norm variance) is negative");
    }
  }
  for (const Tensor& t : m.tensors)
    if (!needed.count(t.name))
      throw Error("tensor '" + t.name + "' is not used by any layer (extra tensor in the file)");
}

Model parse_model(const uint8_t* bytes, size_t size) {
  TensorFile file = parse_safetensors(bytes, size);
  const auto& md = file.metadata;
  const std::string& format =
      required(md, meta::kFormat, "not a bridge-ebm model file, or written by another tool");
  if (format != kModelFormatVersion)
    throw Error("model format version \"" + format + "\" is not supported: this runtime reads "
                "version \"" + kModelFormatVersion + "\" (update bridge-ebm, or re-export the model)");

  Model m;
  const std::string& kind = required(md, meta::kKind, "\"energy\" or \"classifier\"");
  if (kind == "energy") {
    m.kind = ModelKind::kEnergy;
  } else if (kind == "classifier") {
    m.kind = ModelKind::kClassifier;
    const json labels = parse_json_text(required(md, meta::kLabels, "a JSON array of class names"),
                                        "metadata \"ebm.labels\"");
    if (!labels.is_array()) throw Error("metadata \"ebm.labels\" must be a JSON array of strings");
    for (const json& l : labels) {
      if (!l.is_string()) throw Error("metadata \"ebm.labels\" must be a JSON array of strings");
      m.labels.push_back(l.get<std::string>());
    }
  } else {
    throw Error("metadata \"ebm.kind\" is \"" + kind + "\"; expected \"energy\" or \"classifier\"");
  }

  try {
    const Shape input = parse_input_shape(
        parse_json_text(required(md, meta::kInput, "{\"channels\":C,\"height\":H,\"width\":W}"),
                        "metadata \"ebm.input\""));
    m.arch = resolve_architecture(
        input, parse_json_text(required(md, meta::kLayers, "the layer list"), "metadata \"ebm.layers\""));
  } catch (const Error& e) {
    throw Error(std::string("model architecture: ") + e.what());
  }
  if (auto it = md.find(meta::kSampler); it != md.end())
    m.sampler = parse_sampler_params(parse_json_text(it->second, "metadata \"ebm.sampler\""));
  if (auto it = md.find(meta::kCard); it != md.end()) {
    m.card = parse_json_text(it->second, "metadata \"ebm.card\"");
    if (!m.card.is_object()) throw Error("metadata \"ebm.card\" must be a JSON object");
  }
  m.tensors = std::move(file.tensors);
  validate_model(m);
  return m;
}

Model load_model(const std::string& path) {
  try {
    const std::vector<uint8_t> bytes = read_file(path, uint64_t(1) << 31);
    return parse_model(bytes.data(), bytes.size());
  } catch (const Error& e) {
    throw Error("model '" + path + "': " + e.what());
  }
}

std::vector<uint8_t> serialize_model(const Model& m, DType dtype) {
  validate_model(m);
  TensorFile file;
  file.metadata[meta::kFormat] = kModelFormatVersion;
  file.metadata[meta::kKind] = model_kind_name(m.kind);
  if (m.kind == ModelKind::kClassifier) file.metadata[meta::kLabels] = json(m.labels).dump();
  file.metadata[meta::kInput] = input_shape_json(m.arch.input).dump();
  file.metadata[meta::kLayers] = m.arch.layers_json().dump();
  file.metadata[meta::kSampler] = sampler_params_json(m.sampler).dump();
  file.metadata[meta::kCard] = m.card.dump();
  // Tensors in layer order, so the file reads top to bottom like the network.
  for (const LayerSpec& l : m.arch.layers)
    for (const TensorRef& ref : l.tensors) {
      Tensor t = m.tensor(ref.name);
      t.stored = dtype;
      file.tensors.push_back(std::move(t));
    }
  return serialize_safetensors(file);
}

void save_model(const std::string& path, const Model& m, DType dtype) {
  write_file_atomic(path, serialize_model(m, dtype));
}

Model random_model(const Architecture& arch, uint64_t seed, ModelKind kind) {
  Model m;
  m.kind = kind;
  m.arch = arch;
  if (kind == ModelKind::kClassifier)
    for (int i = 0; i < arch.output().c; ++i) m.labels.push_back("class" + std::to_string(i));
  Pcg32 rng(seed, 7);
  for (const LayerSpec& l : arch.layers) {
    const int64_t fan_in = l.kind == LayerKind::kConv2d ? int64_t(l.in.c) * l.kernel_h * l.kernel_w
                                                        : int64_t(l.in.c);
    const float bound = 1.0f / std::sqrt(float(fan_in));
    for (const TensorRef& ref : l.tensors) {
      Tensor t;
      t.name = ref.name;
      t.shape = ref.shape;
      t.data.resize(size_t(t.numel()));
      for (float& v : t.data) {
        if (ref.role == "running_var" || ref.role == "scale")
          v = 0.5f + rng.uniform();  // positive, around 1
        else if (ref.role == "weight" && l.kind == LayerKind::kBatchNorm)
          v = 0.5f + rng.uniform();
        else if (l.kind == LayerKind::kBatchNorm || l.kind == LayerKind::kAffine)
          v = 0.2f * rng.uniform_pm1();  // mean, bias, shift
        else
          v = bound * rng.uniform_pm1();
      }
      m.tensors.push_back(std::move(t));
    }
  }
  return m;
}

}  // namespace ebm

namespace ebm {

namespace {

// y = s * x + t per channel, for a batchnorm (inference form) or affine layer.
void scale_shift(const Model& m, const LayerSpec& l, std::vector<double>* s,
                 std::vector<double>* t) {
  const size_t c = size_t(l.out.c);
  s->assign(c, 1.0);
  t->assign(c, 0.0);
  if (l.kind == LayerKind::kAffine) {
    const Tensor& scale = m.tensor(l.tensor("scale")->name);
    const Tensor& shift = m.tensor(l.tensor("shift")->name);
    for (size_t i = 0; i < c; ++i) {
      (*s)[i] = scale.data[i];
      (*t)[i] = shift.data[i];
    }
    return;
  }
  const Tensor& w = m.tensor(l.tensor("weight")->name);
  const Tensor& b = m.tensor(l.tensor("bias")->name);
  const Tensor& mean = m.tensor(l.tensor("running_mean")->name);
  const Tensor& var = m.tensor(l.tensor("running_var")->name);
  for (size_t i = 0; i < c; ++i) {
    (*s)[i] = double(w.data[i]) / std::sqrt(double(var.data[i]) + double(l.eps));
    (*t)[i] = double(b.data[i]) - double(mean.data[i]) * (*s)[i];
  }
}

Tensor make_tensor(const std::string& name, const std::vector<int64_t>& shape,
                   std::vector<float> data) {
  Tensor t;
  t.name = name;
  t.shape = shape;
  t.data = std::move(data);
  return t;
}

}  // namespace

Model fold_normalization(const Model& m) {
  validate_model(m);
  Model out;
  out.kind = m.kind;
  out.labels = m.labels;
  out.sampler = m.sampler;
  out.card = m.card;
  const json explicit_layers = m.arch.layers_json();
  json layers = json::array();
  const std::vector<LayerSpec>& L = m.arch.layers;
  for (size_t i = 0; i < L.size(); ++i) {
    const LayerSpec& l = L[i];
    const std::string prefix = "layers." + std::to_string(layers.size()) + ".";
    json lj = explicit_layers[i];
    lj.erase("tensors");
    const bool linear = l.kind == LayerKind::kConv2d || l.kind == LayerKind::kDense;
    const bool norm_next = i + 1 < L.size() && (L[i + 1].kind == LayerKind::kBatchNorm ||
                                                L[i + 1].kind == LayerKind::kAffine);
    if (linear && norm_next) {
      std::vector<double> s, t;
      scale_shift(m, L[i + 1], &s, &t);
      const TensorRef& wref = *l.tensor("weight");
      std::vector<float> w = m.tensor(wref.name).data;
      const size_t row = w.size() / s.size();
      for (size_t o = 0; o < s.size(); ++o)
        for (size_t k = 0; k < row; ++k) w[o * row + k] = float(w[o * row + k] * s[o]);
      std::vector<float> b(s.size());
      for (size_t o = 0; o < s.size(); ++o) {
        const double b0 = l.bias ? double(m.tensor(l.tensor("bias")->name).data[o]) : 0.0;
        b[o] = float(s[o] * b0 + t[o]);
      }
      lj["bias"] = true;
      out.tensors.push_back(make_tensor(prefix + "weight", wref.shape, std::move(w)));
      out.tensors.push_back(make_tensor(prefix + "bias", {int64_t(s.size())}, std::move(b)));
      ++i;  // the normalisation layer is consumed
    } else if (l.kind == LayerKind::kBatchNorm) {
      std::vector<double> s, t;
      scale_shift(m, l, &s, &t);
      lj = {{"type", "affine"}, {"channels", l.in.c}};
      out.tensors.push_back(make_tensor(prefix + "scale", {int64_t(s.size())},
                                        std::vector<float>(s.begin(), s.end())));
      out.tensors.push_back(make_tensor(prefix + "shift", {int64_t(t.size())},
                                        std::vector<float>(t.begin(), t.end())));
    } else {
      for (const TensorRef& ref : l.tensors)
        out.tensors.push_back(make_tensor(prefix + ref.role, ref.shape, m.tensor(ref.name).data));
    }
    layers.push_back(lj);
  }
  out.arch = resolve_architecture(m.arch.input, layers);
  validate_model(out);
  return out;
}

}  // namespace ebm
