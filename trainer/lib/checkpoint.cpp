#include "checkpoint.h"

#include <algorithm>

#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/json_util.h"
#include "objective.h"

namespace ebm::train {

namespace {

std::string read_string(torch::serialize::InputArchive& in, const std::string& key) {
  c10::IValue v;
  in.read(key, v);
  if (!v.isString()) throw Error("'" + key + "' is not a string");
  return v.toStringRef();
}

int64_t read_int(torch::serialize::InputArchive& in, const std::string& key) {
  c10::IValue v;
  in.read(key, v);
  if (!v.isInt()) throw Error("'" + key + "' is not an integer");
  return v.toInt();
}

double read_double(torch::serialize::InputArchive& in, const std::string& key) {
  c10::IValue v;
  in.read(key, v);
  if (!v.isDouble()) throw Error("'" + key + "' is not a number");
  return v.toDouble();
}

// Reads the archive at `path`, or from `bytes` where given (rank 0's copy of it).
void load_archive(torch::serialize::InputArchive& in, const std::string& path,
                  const std::vector<uint8_t>* bytes = nullptr) {
  try {
    // Onto the CPU, whichever device wrote it: a GPU run's checkpoint resumes or exports on a
    // machine without one (Trainer::load moves what trains to its device).
    if (bytes)
      in.load_from(reinterpret_cast<const char*>(bytes->data()), bytes->size(), torch::kCPU);
    else
      in.load_from(path, torch::kCPU);
  } catch (const c10::Error& e) {
    throw Error("checkpoint '" + path +
                "' cannot be read as a TorchScript archive: " + e.what_without_backtrace());
  }
  c10::IValue format;
  if (!in.try_read("format", format) || !format.isString())
    throw Error("'" + path + "' is not a bridge-ebm checkpoint (no \"format\" entry)");
  if (format.toStringRef() != kCheckpointFormat)
    throw Error("checkpoint '" + path + "' has format \"" + format.toStringRef() +
                "\"; this trainer reads \"" + kCheckpointFormat + "\"");
}

TrainCounters read_counters(torch::serialize::InputArchive& in) {
  TrainCounters c;
  c.step = read_int(in, "step");
  c.epoch = read_int(in, "epoch");
  c.step_in_epoch = read_int(in, "step_in_epoch");
  c.rollbacks = read_int(in, "rollbacks");
  c.wall_seconds = read_double(in, "wall_seconds");
  return c;
}

}  // namespace

void Trainer::save(const std::string& path) const {
  // Under data parallelism the ranks' own state comes to rank 0: every generator, and each rank's
  // part of the objective's state (the replay buffer).
  std::vector<torch::Tensor> rngs, parts;
  if (dist_) {
    rngs = dist_->gather(gen_.get_state(), "gathering the generators for a checkpoint");
    const torch::Tensor own = objective_->rank_state();
    if (own.defined()) parts = dist_->gather(own, "gathering the replay buffer for a checkpoint");
    if (!dist_->root()) return;
  }
  torch::serialize::OutputArchive out;
  out.write("format", c10::IValue(std::string(kCheckpointFormat)));
  out.write("config", c10::IValue(cfg_.to_json().dump()));
  out.write("kind", c10::IValue(std::string(model_kind_name(kind()))));
  out.write("labels", c10::IValue(nlohmann::json(labels_).dump()));

  write_net_state(out, "model", *net_);
  torch::serialize::OutputArchive optim;
  opt_->save(optim);
  out.write("optimizer", optim);
  objective_->save(out);  // the replay buffer, the moving average
  out.write("rng", gen_.get_state(), true);
  out.write("step", c10::IValue(counters_.step));
  out.write("epoch", c10::IValue(counters_.epoch));
  out.write("step_in_epoch", c10::IValue(counters_.step_in_epoch));
  out.write("rollbacks", c10::IValue(counters_.rollbacks));
  out.write("wall_seconds", c10::IValue(counters_.wall_seconds));
  out.write("summary", c10::IValue(summary_.dump()));
  out.write("world_size", c10::IValue(int64_t(shard_.size)));
  if (shard_.size > 1) {
    torch::serialize::OutputArchive ranks;
    for (int r = 1; r < shard_.size; ++r) {
      ranks.write("rng_" + std::to_string(r), rngs[size_t(r)], true);
      if (!parts.empty()) ranks.write("state_" + std::to_string(r), parts[size_t(r)], true);
    }
    out.write("ranks", ranks);
  }

  // The archive is assembled in memory and written by the one atomic writer; reserving the
  // tensors' size up front avoids doubling a 300 MB buffer (the paper preset's replay buffer).
  std::vector<uint8_t> bytes;
  size_t estimate = (size_t(1) << 20) + objective_->state_bytes() * size_t(shard_.size);
  for (const auto& [name, t] : net_->state()) estimate += size_t(t.numel()) * 4 * 3;  // + Adam
  bytes.reserve(estimate);
  out.save_to([&](const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + n);
    return n;
  });
  write_file_atomic(path, bytes);
}

void Trainer::load(const std::string& path) {
  torch::serialize::InputArchive in;
  if (dist_) {
    // Rank 0 reads the file and sends it: the other machines need no copy of the run folder.
    std::vector<uint8_t> bytes;
    std::string error;
    if (dist_->root()) {
      try {
        bytes = read_file(path);
      } catch (const Error& e) {
        error = e.what();
      }
    }
    bytes = dist_->broadcast_bytes(std::move(bytes), "sending the checkpoint");
    if (bytes.empty())
      throw Error(dist_->root() ? error : "rank 0 could not read the checkpoint " + path);
    load_archive(in, path, &bytes);
  } else {
    load_archive(in, path);
  }
  try {
    const TrainConfig saved =
        TrainConfig::from_json(parse_json_text(read_string(in, "config"), "config"));
    if (saved.architecture != cfg_.architecture)
      throw Error("it was made with a different architecture");
    if (saved.task != cfg_.task)
      throw Error(std::string("it was made for task ") + task_name(saved.task));
    // A checkpoint from before data parallelism has no world size: one process wrote it.
    c10::IValue world;
    const int64_t saved_world =
        in.try_read("world_size", world) && world.isInt() ? world.toInt() : 1;
    if (saved_world != shard_.size && draws_per_rank(cfg_))
      throw Error("it was written by a run of " + std::to_string(saved_world) +
                  (saved_world == 1 ? " process" : " processes") +
                  ", whose contrastive-divergence chains and replay buffer are split " +
                  std::to_string(saved_world) +
                  " ways; resume it with WORLD_SIZE=" + std::to_string(saved_world) +
                  " (this run has " + std::to_string(shard_.size) + ")");

    read_net_state(in, "model", *net_);
    torch::serialize::InputArchive optim;
    in.read("optimizer", optim);
    // Adam's load only fills the state the checkpoint has; a checkpoint from before the first
    // step has none, and the current moments (NaN after a divergence) must not survive.
    opt_->state().clear();
    opt_->load(optim);
    if (!device_.is_cpu())
      for (auto& [key, state] : opt_->state()) {
        auto& a = static_cast<torch::optim::AdamParamState&>(*state);
        a.exp_avg(a.exp_avg().to(device_));
        a.exp_avg_sq(a.exp_avg_sq().to(device_));
        if (a.max_exp_avg_sq().defined()) a.max_exp_avg_sq(a.max_exp_avg_sq().to(device_));
      }
    objective_->load(in);
    torch::Tensor rng;
    in.read("rng", rng, true);
    gen_.set_state(rng);
    // The other ranks' own generators and buffer parts, where the run that wrote it had as many
    // ranks (a run whose draws are the same on every rank keeps rank 0's generator at any size).
    if (shard_.rank > 0 && saved_world == shard_.size) {
      torch::serialize::InputArchive ranks;
      in.read("ranks", ranks);
      const std::string r = std::to_string(shard_.rank);
      ranks.read("rng_" + r, rng, true);
      gen_.set_state(rng);
      torch::Tensor part;
      if (ranks.try_read("state_" + r, part, true)) objective_->restore_rank_state(part);
    }
    counters_ = read_counters(in);
    summary_ = parse_json_text(read_string(in, "summary"), "summary");
  } catch (const Error& e) {
    throw Error("checkpoint '" + path + "': " + e.what());
  } catch (const c10::Error& e) {
    throw Error("checkpoint '" + path + "': " + e.what_without_backtrace());
  }
}

CheckpointInfo read_checkpoint(const std::string& path, int grid) {
  torch::serialize::InputArchive in;
  load_archive(in, path);
  CheckpointInfo info;
  try {
    info.config = TrainConfig::from_json(parse_json_text(read_string(in, "config"), "config"));
    info.architecture = info.config.architecture;
    info.counters = read_counters(in);
    info.summary = parse_json_text(read_string(in, "summary"), "summary");
    const std::string kind = read_string(in, "kind");
    if (kind != "energy" && kind != "classifier") throw Error("unknown kind \"" + kind + "\"");
    info.kind = kind == "classifier" ? ModelKind::kClassifier : ModelKind::kEnergy;
    info.labels =
        parse_json_text(read_string(in, "labels"), "labels").get<std::vector<std::string>>();

    // The stored tensors are read by the names the layer list gives them; the architecture itself
    // is checked by checkpoint_model(). A model is made from the moving average where there is one.
    torch::serialize::InputArchive model;
    const bool ema = info.config.task == Task::kEnergy &&
                     info.config.objective == Objective::kDenoisingScoreMatching;
    const bool multigrid =
        info.config.task == Task::kEnergy && info.config.objective == Objective::kMultigrid;
    if (grid >= 0) {
      if (!multigrid)
        throw Error("--grid " + std::to_string(grid) + ": this run (" +
                    objective_name(info.config.objective) +
                    ") has one network; grids belong to --objective multigrid runs");
      const Architecture a = multigrid_architecture(info.architecture, grid);
      info.architecture = {{"input", input_shape_json(a.input)}, {"layers", a.layers_json()}};
      info.grid = grid;
    }
    in.read(grid >= 0 ? multigrid_key(grid) : ema ? "ema" : "model", model);
    if (info.architecture.contains("energy") &&
        parse_energy_form(info.architecture.at("energy")).denoiser) {
      torch::Tensor v;
      if (!model.try_read(archive_key(kEnergyMeanTensor), v, true))
        throw Error(std::string("model has no tensor '") + kEnergyMeanTensor + "'");
      info.tensors.emplace_back(kEnergyMeanTensor, v);
    }
    const nlohmann::json& layers = info.architecture.value("layers", nlohmann::json::array());
    for (size_t i = 0; i < layers.size(); ++i) {
      const nlohmann::json& t = layers[i].value("tensors", nlohmann::json::object());
      std::vector<std::string> roles;
      for (const auto& [role, name] : t.items()) roles.push_back(role);
      if (info.config.spectral_norm && t.contains("weight") &&
          (layers[i].value("type", "") == "conv2d" || layers[i].value("type", "") == "dense")) {
        roles.push_back("sn_u");
        roles.push_back("sn_v");
      }
      for (const std::string& role : roles) {
        const std::string name = tensor_name(i, role);
        torch::Tensor v;
        if (!model.try_read(archive_key(name), v, true))
          throw Error("model has no tensor '" + name + "'");
        info.tensors.emplace_back(name, v);
      }
    }
  } catch (const Error& e) {
    throw Error("checkpoint '" + path + "': " + e.what());
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint '" + path + "': " + e.what());
  } catch (const c10::Error& e) {
    throw Error("checkpoint '" + path + "': " + e.what_without_backtrace());
  }
  return info;
}

Model checkpoint_model(const CheckpointInfo& info) {
  Architecture arch;
  EnergyForm energy;
  try {
    if (info.architecture.contains("energy")) energy = parse_energy_form(info.architecture.at("energy"));
    arch = resolve_architecture(
        layers_input(parse_input_shape(info.architecture.at("input")), energy),
        info.architecture.at("layers"));
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("the checkpoint's architecture is malformed: ") + e.what());
  } catch (const Error& e) {
    throw Error(std::string("the runtime cannot run the checkpoint's architecture: ") + e.what());
  }
  EnergyNet net(arch, 0, info.config.spectral_norm, energy);
  net->load_state(info.tensors);
  Model m = net->to_model(info.kind, info.labels);
  try {
    validate_model(m);
  } catch (const Error& e) {
    throw Error(std::string("the runtime cannot run the checkpoint's model: ") + e.what());
  }
  return m;
}

}  // namespace ebm::train
