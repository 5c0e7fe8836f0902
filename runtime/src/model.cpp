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
constexpr const char* kEnergy = "ebm.energy";
constexpr const char* kAutoguide = "ebm.autoguide";
}  // namespace meta

const char* model_kind_name(ModelKind k) {
  return k == ModelKind::kClassifier ? "classifier" : "energy";
}

const Tensor& Model::tensor(const std::string& name) const {
  for (const Tensor& t : tensors)
    if (t.name == name) return t;
  throw Error("model has no tensor '" + name + "'");
}

Shape Model::image_shape() const { return ebm::image_shape(arch, energy); }

json energy_form_json(const EnergyForm& f) {
  if (f.scalar_noise)
    return {{"form", "scalar"}, {"sigma_data", json_float(f.sigma_data)}, {"noise_plane", true}};
  if (!f.denoiser) return {{"form", "scalar"}};
  return {{"form", "denoiser"}, {"sigma_data", json_float(f.sigma_data)}, {"noise_plane", f.noise_plane}};
}

EnergyForm parse_energy_form(const json& j) {
  if (!j.is_object()) throw Error("metadata \"ebm.energy\" must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (key != "form" && key != "sigma_data" && key != "noise_plane")
      throw Error("metadata \"ebm.energy\": unknown key \"" + key + "\" (known: form, sigma_data, noise_plane)");
  }
  EnergyForm f;
  const std::string form = j.contains("form") && j["form"].is_string() ? j["form"].get<std::string>() : "";
  if (form != "denoiser" && form != "scalar")
    throw Error("metadata \"ebm.energy\": \"form\" must be \"denoiser\" or \"scalar\", got " +
                (j.contains("form") ? j["form"].dump() : std::string("nothing")));
  f.denoiser = form == "denoiser";
  if (j.contains("sigma_data")) {
    const json& v = j["sigma_data"];
    const double d = v.is_number() ? v.get<double>() : NAN;
    if (!(d >= 1e-3 && d <= 1e3))
      throw Error("metadata \"ebm.energy\": \"sigma_data\" must be a number in [0.001, 1000], got " + v.dump());
    f.sigma_data = float(d);
  }
  if (j.contains("noise_plane")) {
    if (!j["noise_plane"].is_boolean())
      throw Error("metadata \"ebm.energy\": \"noise_plane\" must be true or false");
    f.noise_plane = j["noise_plane"].get<bool>();
  }
  // A scalar form reads a noise plane only when it says so (a noise-conditional classifier).
  if (!f.denoiser) {
    f.scalar_noise = j.contains("noise_plane") && f.noise_plane;
    f.noise_plane = true;
  }
  return f;
}

json Model::describe() const {
  json j = {{"kind", model_kind_name(kind)},
            {"input", input_shape_json(image_shape())},
            {"parameters", arch.parameter_count()},
            {"layers", arch.layers.size()},
            {"multiply_adds", arch.multiply_adds()},  // one forward pass of one image
            {"sampler", sampler_params_json(sampler)},
            {"card", card}};
  if (kind == ModelKind::kClassifier) j["labels"] = labels;
  if (noise_conditional(energy)) j["energy"] = energy_form_json(energy);
  // A guide for noise-level samplers, not a labeller of finished drawings (the page picks by it).
  if (energy.scalar_noise) j["noise_conditional"] = true;
  if (autoguide) {
    // What a listing needs to name the weaker network; its whole card stays in the file.
    json named = json::object();
    for (const char* key : {"name", "description"})
      if (autoguide->card.contains(key)) named[key] = autoguide->card[key];
    j["autoguide"] = {{"parameters", autoguide->arch.parameter_count()},
                      {"multiply_adds", autoguide->arch.multiply_adds()},
                      {"card", named}};
  }
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
  std::set<std::string> needed;
  if (m.energy.scalar_noise) {
    if (m.kind != ModelKind::kClassifier)
      throw Error("a noise plane on a scalar form is for classifiers (a noise-conditional guide); "
                  "an energy model with a noise plane is a denoiser (\"form\": \"denoiser\")");
    if (m.image_shape().c < 1) throw Error("a classifier with a noise plane needs at least 2 input channels");
  }
  if (!m.energy.denoiser)
    for (size_t i = 0; i < m.arch.layers.size(); ++i)
      if (m.arch.layers[i].sigma_max > 0)
        throw Error("layer " + std::to_string(i) + " (add) is gated by a noise level (\"sigma_max\"), "
                    "which only a denoiser energy (\"form\": \"denoiser\") has; drop \"sigma_max\"");
  if (m.energy.denoiser) {
    if (m.kind != ModelKind::kEnergy) throw Error("a classifier cannot have a denoiser energy");
    const Shape image = m.image_shape();
    if (image.c < 1) throw Error("a denoiser with a noise plane needs at least 2 input channels");
    if (out != image)
      throw Error("a denoiser's layers must output the image shape " + image.str() + ", these output " +
                  out.str());
    const Tensor* mean = nullptr;
    for (const Tensor& c : m.tensors)
      if (c.name == kEnergyMeanTensor) mean = &c;
    const std::vector<int64_t> want = {image.c, image.h, image.w};
    if (!mean) throw Error(std::string("a denoiser needs tensor '") + kEnergyMeanTensor + "' with shape " + shape_str(want));
    if (mean->shape != want || int64_t(mean->data.size()) != mean->numel())
      throw Error(std::string("tensor '") + kEnergyMeanTensor + "' has shape " + shape_str(mean->shape) +
                  " but the image is " + shape_str(want));
    for (float v : mean->data)
      if (!std::isfinite(v)) throw Error(std::string("tensor '") + kEnergyMeanTensor + "' holds a non-finite value");
    needed.insert(kEnergyMeanTensor);
  } else if (out.h != 1 || out.w != 1)
    throw Error("the last layer outputs " + out.str() + "; a model must end in a flat vector "
                "(add flatten and dense layers)");
  if (m.kind == ModelKind::kEnergy && !m.energy.denoiser && out.c != 1)
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
  if (m.sampler.autoguide != 1.0f && !m.autoguide)
    throw Error("sampler setting \"autoguide\" asks for autoguidance, which needs a model that "
                "carries a weaker network (format 3, \"ebm.autoguide\"); this one carries none "
                "(ebm-export --autoguide MODEL adds one)");
  if (m.autoguide) {
    const Model& weak = *m.autoguide;
    if (!m.energy.denoiser)
      throw Error("only a denoiser energy can carry a weaker network for autoguidance");
    if (weak.kind != ModelKind::kEnergy || !weak.energy.denoiser)
      throw Error(std::string("the autoguidance network must be a denoiser energy (a "
                              "noise-conditional model trained by denoising score matching); "
                              "this one is ") +
                  (weak.kind == ModelKind::kClassifier ? "a classifier" : "a scalar energy"));
    if (weak.image_shape() != m.image_shape())
      throw Error("the autoguidance network takes " + weak.image_shape().str() +
                  " images but the model takes " + m.image_shape().str());
    if (weak.autoguide) throw Error("the autoguidance network cannot carry one of its own");
    try {
      validate_model(weak);
    } catch (const Error& e) {
      throw Error(std::string("the autoguidance network: ") + e.what());
    }
  }
}

namespace {

Model build_model(TensorFile file);

// The weaker network of a format-3 file: "ebm.autoguide" over the model's own input, with the
// tensors under kAutoguidePrefix (taken out of `tensors`).
std::shared_ptr<const Model> take_autoguide(const std::string& text, const std::string& input,
                                            std::vector<Tensor>* tensors) {
  const json j = parse_json_text(text, "metadata \"ebm.autoguide\"");
  if (!j.is_object()) throw Error("metadata \"ebm.autoguide\" must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (key != "layers" && key != "energy" && key != "card")
      throw Error("metadata \"ebm.autoguide\": unknown key \"" + key + "\" (known: layers, energy, card)");
  }
  if (!j.contains("layers") || !j.contains("energy"))
    throw Error("metadata \"ebm.autoguide\" needs \"layers\" and \"energy\"");
  TensorFile weak;
  weak.metadata = {{meta::kFormat, kModelFormatDenoiser},
                   {meta::kKind, "energy"},
                   {meta::kInput, input},
                   {meta::kLayers, j["layers"].dump()},
                   {meta::kEnergy, j["energy"].dump()}};
  if (j.contains("card")) weak.metadata[meta::kCard] = j["card"].dump();
  const std::string prefix = kAutoguidePrefix;
  std::vector<Tensor> own;
  for (Tensor& t : *tensors) {
    if (t.name.compare(0, prefix.size(), prefix) == 0) {
      t.name = t.name.substr(prefix.size());
      weak.tensors.push_back(std::move(t));
    } else {
      own.push_back(std::move(t));
    }
  }
  *tensors = std::move(own);
  try {
    return std::make_shared<const Model>(build_model(std::move(weak)));
  } catch (const Error& e) {
    throw Error(std::string("the autoguidance network: ") + e.what());
  }
}

Model build_model(TensorFile file) {
  const auto& md = file.metadata;
  const std::string& format =
      required(md, meta::kFormat, "not a bridge-ebm model file, or written by another tool");
  if (format != kModelFormatVersion && format != kModelFormatDenoiser &&
      format != kModelFormatAutoguided)
    throw Error("model format version \"" + format + "\" is not supported: this runtime reads "
                "versions \"" + kModelFormatVersion + "\", \"" + kModelFormatDenoiser + "\" and \"" +
                kModelFormatAutoguided + "\" (update bridge-ebm, or re-export the model)");
  if (format == kModelFormatAutoguided && !md.count(meta::kAutoguide))
    throw Error("a format \"3\" model carries a weaker network in metadata \"ebm.autoguide\"; "
                "this one has none");
  if (format != kModelFormatAutoguided && md.count(meta::kAutoguide))
    throw Error("metadata \"ebm.autoguide\" needs format \"3\", the file says \"" + format + "\"");

  Model m;
  if (auto it = md.find(meta::kAutoguide); it != md.end())
    m.autoguide = take_autoguide(it->second, required(md, meta::kInput, "the model's input"),
                                 &file.tensors);
  if (format != kModelFormatVersion) {
    m.energy = parse_energy_form(parse_json_text(
        required(md, meta::kEnergy, "format 2 describes its energy there, as does format 3"), "metadata \"ebm.energy\""));
    if (!noise_conditional(m.energy))
      throw Error("a format \"" + format + "\" model must have a denoiser energy or a noise plane "
                  "(\"ebm.energy\" {\"form\": \"scalar\", \"noise_plane\": true} for a classifier)");
  } else if (md.count(meta::kEnergy)) {
    throw Error("metadata \"ebm.energy\" needs format \"2\", the file says \"1\"");
  }
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
    Shape input = parse_input_shape(
        parse_json_text(required(md, meta::kInput, "{\"channels\":C,\"height\":H,\"width\":W}"),
                        "metadata \"ebm.input\""));
    if (input.c >= kMaxChannels) throw Error("input has too many channels");
    input = layers_input(input, m.energy);  // the layers also read a noise plane
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
  // Network folds batch norm into the layer before it; a fold that overflows would be refused
  // there, after every listing had called the file valid. Refuse it here, once, for everyone.
  try {
    fold_normalization(m);
  } catch (const Error& e) {
    throw Error(std::string("folding batch norm into the layer before it fails: ") + e.what() +
                " (a batch-norm scale weight / sqrt(running_var + eps) too large for F32)");
  }
  return m;
}

}  // namespace

Model parse_model(const uint8_t* bytes, size_t size) {
  return build_model(parse_safetensors(bytes, size));
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
  const bool format2 = noise_conditional(m.energy);
  file.metadata[meta::kFormat] = m.autoguide ? kModelFormatAutoguided
                                 : format2   ? kModelFormatDenoiser
                                             : kModelFormatVersion;
  if (format2) file.metadata[meta::kEnergy] = energy_form_json(m.energy).dump();
  file.metadata[meta::kKind] = model_kind_name(m.kind);
  if (m.kind == ModelKind::kClassifier) file.metadata[meta::kLabels] = json(m.labels).dump();
  file.metadata[meta::kInput] = input_shape_json(m.image_shape()).dump();
  file.metadata[meta::kLayers] = m.arch.layers_json().dump();
  file.metadata[meta::kSampler] = sampler_params_json(m.sampler).dump();
  file.metadata[meta::kCard] = m.card.dump();
  // Tensors in layer order, so the file reads top to bottom like the network.
  if (m.energy.denoiser) {
    Tensor t = m.tensor(kEnergyMeanTensor);
    t.stored = dtype;
    file.tensors.push_back(std::move(t));
  }
  for (const LayerSpec& l : m.arch.layers)
    for (const TensorRef& ref : l.tensors) {
      Tensor t = m.tensor(ref.name);
      t.stored = dtype;
      file.tensors.push_back(std::move(t));
    }
  if (m.autoguide) {
    const Model& weak = *m.autoguide;
    file.metadata[meta::kAutoguide] = json{{"layers", weak.arch.layers_json()},
                                           {"energy", energy_form_json(weak.energy)},
                                           {"card", weak.card}}.dump();
    Tensor mean = weak.tensor(kEnergyMeanTensor);
    mean.name = kAutoguidePrefix + mean.name;
    mean.stored = dtype;
    file.tensors.push_back(std::move(mean));
    for (const LayerSpec& l : weak.arch.layers)
      for (const TensorRef& ref : l.tensors) {
        Tensor t = weak.tensor(ref.name);
        t.name = kAutoguidePrefix + t.name;
        t.stored = dtype;
        file.tensors.push_back(std::move(t));
      }
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
  out.energy = m.energy;
  if (m.energy.denoiser) out.tensors.push_back(m.tensor(kEnergyMeanTensor));
  out.labels = m.labels;
  out.sampler = m.sampler;
  out.card = m.card;
  out.autoguide = m.autoguide;  // folded when its own Network is built
  const json explicit_layers = m.arch.layers_json();
  json layers = json::array();
  const std::vector<LayerSpec>& L = m.arch.layers;
  for (size_t i = 0; i < L.size(); ++i) {
    const LayerSpec& l = L[i];
    const std::string prefix = "layers." + std::to_string(layers.size()) + ".";
    json lj = explicit_layers[i];
    lj.erase("tensors");
    const bool linear = l.kind == LayerKind::kConv2d || l.kind == LayerKind::kDense;
    // Folding is only exact when the normalisation reads this layer and nothing else does.
    const bool norm_next = i + 1 < L.size() && (L[i + 1].kind == LayerKind::kBatchNorm ||
                                                L[i + 1].kind == LayerKind::kAffine) &&
                           L[i + 1].from == int(i) && l.id.empty();
    if (linear && norm_next) {
      if (!L[i + 1].id.empty()) lj["id"] = L[i + 1].id;
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
      for (auto it = lj.begin(); it != lj.end();)
        it = it.key() == "id" || it.key() == "from" ? std::next(it) : lj.erase(it);
      lj["type"] = "affine";
      lj["channels"] = l.in.c;
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
