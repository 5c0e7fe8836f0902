// The container: round trips, and one test per way a file can be broken. Each broken file is
// built by hand and must be refused with a message naming the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ebm/error.h"
#include "ebm/half.h"
#include "ebm/safetensors.h"
#include "test_util.h"

namespace ebm {
namespace {

using test::expect_error;
using test::f32_bytes;
using test::raw_safetensors;

TensorFile sample_file(DType dtype) {
  TensorFile f;
  f.metadata["ebm.format"] = "1";
  f.metadata["note"] = "héllo \"quoted\"";
  Tensor a;
  a.name = "a.weight";
  a.shape = {2, 3};
  a.data = {1.0f, -2.5f, 0.1f, 1e-3f, 3.14159f, -0.0f};
  a.stored = dtype;
  Tensor b;
  b.name = "b";
  b.shape = {4};
  b.data = {0.5f, 100.0f, -7.25f, 2e-5f};
  b.stored = dtype;
  Tensor s;  // a scalar (rank 0) and an empty tensor are legal safetensors
  s.name = "scalar";
  s.shape = {};
  s.data = {42.0f};
  s.stored = dtype;
  f.tensors = {a, b, s};
  return f;
}

void parse(const std::vector<uint8_t>& bytes) { parse_safetensors(bytes.data(), bytes.size()); }

TEST(Safetensors, F32RoundTripIsExactAndKeepsMetadata) {
  const TensorFile in = sample_file(DType::kF32);
  const std::vector<uint8_t> bytes = serialize_safetensors(in);
  const TensorFile out = parse_safetensors(bytes.data(), bytes.size());
  EXPECT_EQ(out.metadata, in.metadata);
  ASSERT_EQ(out.tensors.size(), in.tensors.size());
  for (size_t i = 0; i < in.tensors.size(); ++i) {
    EXPECT_EQ(out.tensors[i].name, in.tensors[i].name);
    EXPECT_EQ(out.tensors[i].shape, in.tensors[i].shape);
    EXPECT_EQ(out.tensors[i].stored, DType::kF32);
    ASSERT_EQ(out.tensors[i].data.size(), in.tensors[i].data.size());
    for (size_t k = 0; k < in.tensors[i].data.size(); ++k)
      EXPECT_EQ(std::memcmp(&out.tensors[i].data[k], &in.tensors[i].data[k], 4), 0);
  }
}

TEST(Safetensors, F16RoundTripIsWithinHalfPrecision) {
  const TensorFile in = sample_file(DType::kF16);
  const std::vector<uint8_t> bytes = serialize_safetensors(in);
  const TensorFile out = parse_safetensors(bytes.data(), bytes.size());
  for (size_t i = 0; i < in.tensors.size(); ++i)
    for (size_t k = 0; k < in.tensors[i].data.size(); ++k) {
      const float x = in.tensors[i].data[k], y = out.tensors[i].data[k];
      // Relative error of round-to-nearest half: at most 2^-11 for normals; subnormals (below
      // 2^-14) have an absolute error of at most 2^-25.
      EXPECT_LE(std::abs(x - y), std::max(std::abs(x) * std::ldexp(1.0f, -11), std::ldexp(1.0f, -25)))
          << in.tensors[i].name << "[" << k << "]";
      EXPECT_EQ(out.tensors[i].stored, DType::kF16);
    }
}

TEST(Safetensors, HeaderIsPaddedTo8BytesAndTensorsAreInOrder) {
  const std::vector<uint8_t> bytes = serialize_safetensors(sample_file(DType::kF16));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[size_t(i)];
  EXPECT_EQ(n % 8, 0u);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + long(n));
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["a.weight"]["data_offsets"], nlohmann::json({0, 12}));
  EXPECT_EQ(j["b"]["data_offsets"], nlohmann::json({12, 20}));
  EXPECT_EQ(j["scalar"]["data_offsets"], nlohmann::json({20, 22}));
  EXPECT_EQ(j["a.weight"]["dtype"], "F16");
  EXPECT_EQ(bytes.size(), 8 + n + 22);
}

TEST(Safetensors, WriterRefusesNonFiniteValuesAndHalfOverflow) {
  TensorFile f = sample_file(DType::kF32);
  f.tensors[0].data[2] = NAN;
  expect_error([&] { serialize_safetensors(f); }, {"a.weight", "non-finite", "index 2"});
  f = sample_file(DType::kF16);
  f.tensors[1].data[1] = 70000.0f;
  expect_error([&] { serialize_safetensors(f); }, {"'b'", "overflows F16", "F32"});
}

// --- rejection cases ------------------------------------------------------------------------

TEST(SafetensorsRejects, AFileShorterThanTheLengthPrefix) {
  expect_error([] { parse({1, 2, 3}); }, {"3 bytes", "too short"});
}

TEST(SafetensorsRejects, AHeaderLengthOver100MB) {
  expect_error([] { parse(raw_safetensors("{}", {}, (100ull << 20) + 1)); },
               {"header length 104857601", "cap"});
}

TEST(SafetensorsRejects, AHeaderLengthPastTheEndOfTheFile) {
  expect_error([] { parse(raw_safetensors("{}", {}, 5000)); }, {"5000", "past the end"});
}

TEST(SafetensorsRejects, AHeaderThatIsNotJson) {
  expect_error([] { parse(raw_safetensors("{\"a\": [1, 2,, ]}", {})); }, {"not valid JSON"});
}

TEST(SafetensorsRejects, AHeaderThatIsNotAnObject) {
  expect_error([] { parse(raw_safetensors("[1, 2]  ", {})); }, {"does not start with '{'"});
}

TEST(SafetensorsRejects, DeeplyNestedJson) {
  std::string deep = "{\"__metadata__\":";
  for (int i = 0; i < 10000; ++i) deep += "[";
  expect_error([&] { parse(raw_safetensors(deep, {})); }, {"deeper than"});
}

TEST(SafetensorsRejects, AnEntryWithoutDtype) {
  expect_error([] { parse(raw_safetensors(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", f32_bytes({1}))); },
               {"tensor 'w'", "\"dtype\""});
}

TEST(SafetensorsRejects, AnUnknownDtype) {
  expect_error([] { parse(raw_safetensors(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})",
                                          std::vector<uint8_t>(8))); },
               {"tensor 'w'", "unsupported dtype 'I64'", "F32 and F16"});
}

TEST(SafetensorsRejects, ANegativeOrFractionalDimension) {
  expect_error([] { parse(raw_safetensors(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                                          f32_bytes({1}))); },
               {"tensor 'w'", "non-negative integers"});
  expect_error([] { parse(raw_safetensors(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})",
                                          f32_bytes({1}))); },
               {"tensor 'w'", "non-negative integers"});
}

TEST(SafetensorsRejects, AShapeWhoseProductOverflows) {
  // 2^32 * 2^32 would wrap a 64-bit product to 0 if multiplied unguarded.
  expect_error([] { parse(raw_safetensors(
                        R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", {})); },
               {"tensor 'w'", "more than"});
  expect_error([] { parse(raw_safetensors(
                        R"({"w":{"dtype":"F32","shape":[65536,65536,65536],"data_offsets":[0,0]}})", {})); },
               {"tensor 'w'", "more than"});
}

TEST(SafetensorsRejects, AByteSizeThatDoesNotMatchDtypeTimesShape) {
  expect_error([] { parse(raw_safetensors(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                                          f32_bytes({1, 2}))); },
               {"tensor 'w'", "holds 8 bytes", "needs 12"});
}

TEST(SafetensorsRejects, OffsetsThatRunBackwards) {
  expect_error([] { parse(raw_safetensors(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})",
                                          f32_bytes({1}))); },
               {"tensor 'w'", "before begin"});
}

TEST(SafetensorsRejects, AGapBetweenTensors) {
  expect_error([] { parse(raw_safetensors(
                        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                        f32_bytes({1, 2, 3}))); },
               {"tensor 'b'", "gap"});
}

TEST(SafetensorsRejects, OverlappingTensors) {
  expect_error([] { parse(raw_safetensors(
                        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                        f32_bytes({1, 2}))); },
               {"tensor 'b'", "overlaps"});
}

TEST(SafetensorsRejects, OffsetsPastTheEndOfTheFile) {
  expect_error([] { parse(raw_safetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                                          f32_bytes({1, 2}))); },
               {"tensor 'w'", "ends at byte 16", "holds 8 bytes"});
}

TEST(SafetensorsRejects, TrailingBytesAfterTheLastTensor) {
  expect_error([] { parse(raw_safetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                          f32_bytes({1, 2}))); },
               {"trailing bytes"});
}

TEST(SafetensorsRejects, NonFiniteWeights) {
  expect_error([] { parse(raw_safetensors(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                          f32_bytes({1, INFINITY}))); },
               {"tensor 'w'", "non-finite", "index 1"});
  expect_error([] { parse(raw_safetensors(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})",
                                          {0x00, 0x3c, 0x01, 0x7e})); },  // 1.0, NaN
               {"tensor 'w'", "non-finite", "index 1"});
}

TEST(SafetensorsRejects, MetadataValuesThatAreNotStrings) {
  expect_error([] { parse(raw_safetensors(R"({"__metadata__":{"ebm.format":1}})", {})); },
               {"ebm.format", "not a string"});
}

TEST(SafetensorsRejects, TruncationAtEveryLengthWithoutCrashing) {
  const std::vector<uint8_t> good = serialize_safetensors(sample_file(DType::kF16));
  for (size_t len = 0; len < good.size(); ++len) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + long(len));
    EXPECT_THROW(parse(cut), Error) << "length " << len;
  }
}

TEST(SafetensorsRejects, RandomByteFlipsWithoutCrashing) {
  // Corrupted files must throw or parse; never crash or read out of bounds (run under ASan).
  const std::vector<uint8_t> good = serialize_safetensors(sample_file(DType::kF32));
  Pcg32 rng(11, 3);
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> bad = good;
    const int flips = 1 + int(rng.below(4));
    for (int f = 0; f < flips; ++f) bad[rng.below(uint32_t(bad.size()))] ^= uint8_t(1u << rng.below(8));
    try {
      parse(bad);
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace ebm
