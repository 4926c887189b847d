"""The Python twin of the generator against spec/values.md's test vectors."""
import unittest

from ccts_common import portable_values as pv


class GeneratorVectors(unittest.TestCase):
    def test_hashes(self) -> None:
        self.assertEqual(pv.fnv1a64(""), 0xCBF29CE484222325)
        self.assertEqual(pv.fnv1a64("a"), 0xAF63DC4C8601EC8C)
        self.assertEqual(pv.fnv1a64("fc1.weight"), 0x0FC5AB63896269ED)
        self.assertEqual(pv.counter_hash(0, 0, 0), 0xFBE988335F36C931)
        self.assertEqual(pv.counter_hash(0, 0, 1), 0x78482DBE776F39D9)
        self.assertEqual(pv.counter_hash(1, 0, 0), 0x6DF1421574B0D586)
        self.assertEqual(pv.counter_hash(0, 1, 0), 0x224C0BB5384ADAA0)
        self.assertEqual(pv.counter_hash(42, pv.fnv1a64("fc1.weight"), 3), 0xF2C0DAE55742AF56)
        m = 2**64 - 1
        self.assertEqual(pv.counter_hash(m, m, m), 0xFC5A804D0A8ADE77)

    def test_tensors(self) -> None:
        self.assertEqual(pv.uniform([4], -1, 1, 0, pv.fnv1a64("x")),
                         [-0.7386589050292969, -0.2834029197692871, 0.9293133020401001, -0.39320385456085205])
        self.assertEqual(pv.normal([4], 0, pv.fnv1a64("x")),
                         [-0.45137447118759155, 1.1358239650726318, -0.053077757358551025, -1.1873112916946411])
        self.assertEqual(pv.uniform([4], -0.5, 0.5, 7, 12345),
                         [0.40581488609313965, 0.47633665800094604, -0.2428073287010193, 0.378948450088501])
        self.assertEqual(pv.normal([2, 2], 7, 12345),
                         [2.5124998092651367, 0.486966073513031, -2.0360095500946045, -0.4733808636665344])

    def test_encoding_round_trip(self) -> None:
        obs = pv.encode("float32", [1], [1.0])
        self.assertEqual(obs["data"], "AACAPw==")
        for dtype, values in [("float32", [1.5, -2.0]), ("float64", [0.1, 3.0]), ("int64", [-5, 7]),
                              ("int32", [1, 2]), ("bool", [True, False]), ("float16", [0.5, 2.0]),
                              ("bfloat16", [1.0, -2.0])]:
            self.assertEqual(pv.decode(pv.encode(dtype, [2], values))[2], values, dtype)

    def test_bad_observation_names_field(self) -> None:
        with self.assertRaisesRegex(ValueError, r"^tensor\.data: 4 bytes do not match"):
            pv.decode({"dtype": "float32", "shape": [2], "data": "AACAPw=="})
        with self.assertRaisesRegex(ValueError, r"^tensor\.dtype"):
            pv.decode({"dtype": "complex", "shape": [], "data": ""})


if __name__ == "__main__":
    unittest.main()
