// The generator and encoding against spec/values.md's test vectors (the same
// numbers runners/tests/test_portable_values.py checks in Python).
#include <torch/torch.h>
// LibTorch defines a glog-style CHECK when built without glog; the tests use Catch2's.
#undef CHECK
#include "ccts_catch.h"

#include "ccts/values/codec.h"
#include "ccts/values/generator.h"

using namespace ccts::values;

TEST_CASE("fnv1a64 and counter_hash match the spec's test vectors") {
  CHECK(fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(fnv1a64("fc1.weight") == 0x0fc5ab63896269edULL);
  CHECK(counter_hash(0, 0, 0) == 0xfbe988335f36c931ULL);
  CHECK(counter_hash(0, 0, 1) == 0x78482dbe776f39d9ULL);
  CHECK(counter_hash(1, 0, 0) == 0x6df1421574b0d586ULL);
  CHECK(counter_hash(0, 1, 0) == 0x224c0bb5384adaa0ULL);
  CHECK(counter_hash(42, fnv1a64("fc1.weight"), 3) == 0xf2c0dae55742af56ULL);
  CHECK(counter_hash(~0ULL, ~0ULL, ~0ULL) == 0xfc5a804d0a8ade77ULL);
}

TEST_CASE("uniform and normal tensors match the spec's test vectors bit for bit") {
  auto expect = [](const torch::Tensor& t, std::vector<float> want) {
    REQUIRE(t.numel() == static_cast<int64_t>(want.size()));
    for (std::size_t i = 0; i < want.size(); ++i) CHECK(t[i].item<float>() == want[i]);
  };
  expect(uniform({4}, -1, 1, 0, fnv1a64("x")),
         {-0.7386589050292969f, -0.2834029197692871f, 0.9293133020401001f, -0.39320385456085205f});
  expect(normal({4}, 0, fnv1a64("x")),
         {-0.45137447118759155f, 1.1358239650726318f, -0.053077757358551025f, -1.1873112916946411f});
  expect(uniform({4}, -0.5, 0.5, 7, 12345),
         {0.40581488609313965f, 0.47633665800094604f, -0.2428073287010193f, 0.378948450088501f});
  expect(normal({2, 2}, 7, 12345).flatten(),
         {2.5124998092651367f, 0.486966073513031f, -2.0360095500946045f, -0.4733808636665344f});
  CHECK(uniform({3, 5}, 0, 1, 1, 2).sizes() == torch::IntArrayRef({3, 5}));
  CHECK(uniform({1000}, 2, 3, 1, 2).min().item<float>() >= 2.0f);
}

TEST_CASE("base64 follows RFC 4648 with padding") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_decode("Zm9vYg==") == "foob");
  CHECK_THROWS_WITH(base64_decode("Zm9"), "base64 text length is not a multiple of 4");
  CHECK_THROWS_WITH(base64_decode("Zm!v"), "invalid base64 character '!'");
}

TEST_CASE("tensors round-trip with exact bits for every dtype") {
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kFloat16, torch::kBFloat16, torch::kInt64,
                     torch::kInt32, torch::kBool}) {
    torch::Tensor t = (torch::randn({2, 3}) * 100).to(dtype);
    auto obs = encode_tensor(t);
    torch::Tensor back = decode_tensor(obs);
    CHECK(back.scalar_type() == dtype);
    CHECK(torch::equal(back, t));
    CHECK(encode_tensor(back) == obs);
  }
  auto one = encode_tensor(torch::tensor({1.0f}));
  CHECK(one["data"] == "AACAPw==");  // 1.0f little-endian: 00 00 80 3f
  CHECK(encode_tensor(torch::scalar_tensor(2.0f))["shape"] == nlohmann::ordered_json::array());
}

TEST_CASE("decoding a bad observation names the field") {
  auto obs = encode_tensor(torch::ones({2}));
  auto bad = obs;
  bad["dtype"] = "complex";
  CHECK_THROWS_WITH(decode_tensor(bad), "tensor.dtype: unknown dtype \"complex\"");
  bad = obs;
  bad["shape"] = {3};
  CHECK_THROWS_WITH(decode_tensor(bad), "tensor.data: 8 bytes do not match shape and dtype (12 expected)");
  bad = obs;
  bad.erase("data");
  CHECK_THROWS_WITH(decode_tensor(bad), "tensor.data: missing");
}
