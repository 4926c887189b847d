import base64
import struct
import unittest

from reports.tests.samples import tensor
from reports.values import compact_json, decode_tensor, diff_lines, display_value, pretty_json


class TensorDecoding(unittest.TestCase):
    def test_float32_decodes_to_nested_values(self) -> None:
        decoded = decode_tensor(tensor([0.1, 2.0, -3.5, 4.0, 5.0, 6.0], [2, 3]))
        self.assertEqual(decoded, {"dtype": "float32", "shape": [2, 3],
                                   "values": [[0.100000001, 2.0, -3.5], [4.0, 5.0, 6.0]]})

    def test_float32_display_round_trips_to_the_same_bits(self) -> None:
        value = struct.unpack("<f", struct.pack("<f", 0.1))[0]
        shown = decode_tensor(tensor([value]))["values"][0]
        self.assertEqual(struct.pack("<f", shown), struct.pack("<f", value))

    def test_scalar_int64_bool_and_bfloat16(self) -> None:
        scalar = {"kind": "tensor", "dtype": "int64", "shape": [],
                  "data": base64.b64encode(struct.pack("<q", -7)).decode()}
        self.assertEqual(decode_tensor(scalar)["values"], -7)
        flags = {"kind": "tensor", "dtype": "bool", "shape": [2],
                 "data": base64.b64encode(bytes([1, 0])).decode()}
        self.assertEqual(decode_tensor(flags)["values"], [True, False])
        one_and_a_half = struct.unpack("<I", struct.pack("<f", 1.5))[0] >> 16
        bf16 = {"kind": "tensor", "dtype": "bfloat16", "shape": [1],
                "data": base64.b64encode(struct.pack("<H", one_and_a_half)).decode()}
        self.assertEqual(decode_tensor(bf16)["values"], [1.5])

    def test_nan_and_inf_are_shown_as_text(self) -> None:
        decoded = decode_tensor(tensor([float("nan"), float("-inf")]))
        self.assertEqual(decoded["values"], ["nan", "-inf"])

    def test_undecodable_tensors_stay_as_they_came(self) -> None:
        short = tensor([1.0, 2.0])
        short["shape"] = [3]
        self.assertIsNone(decode_tensor(short))
        self.assertEqual(display_value(short), short)
        garbage = dict(tensor([1.0]), data="not base64!")
        self.assertEqual(display_value(garbage), garbage)

    def test_large_tensors_stay_encoded_but_are_cut(self) -> None:
        big = tensor([0.5] * 5000)
        shown = display_value(big)
        self.assertEqual(shown["shape"], [5000])
        self.assertTrue(shown["data"].endswith("… (26668 characters)"), shown["data"][-40:])

    def test_named_tensors_decode_inside(self) -> None:
        obs = {"kind": "named_tensors", "items": [["fc.weight", tensor([1.0, 2.0])]]}
        shown = display_value(obs)
        self.assertEqual(shown["items"][0][1]["values"], [1.0, 2.0])


class Formatting(unittest.TestCase):
    def test_pretty_json_keeps_short_scalar_lists_on_one_line(self) -> None:
        text = pretty_json({"a": [1, 2, 3], "b": {"c": "x"}})
        self.assertEqual(text, '{\n  "a": [1, 2, 3],\n  "b": {\n    "c": "x"\n  }\n}')

    def test_pretty_json_breaks_long_lists(self) -> None:
        text = pretty_json(list(range(100)))
        self.assertEqual(len(text.splitlines()), 102)

    def test_compact_json_is_cut_with_an_ellipsis(self) -> None:
        text = compact_json(list(range(1000)), limit=50)
        self.assertEqual(len(text), 50)
        self.assertTrue(text.endswith("…"))

    def test_diff_marks_expected_and_observed_lines(self) -> None:
        lines = diff_lines({"a": 1, "b": 2}, {"a": 1, "b": 3})
        self.assertIn(("del", '-  "b": 2'), lines)
        self.assertIn(("add", '+  "b": 3'), lines)
        self.assertEqual(lines[0], ("header", "--- expected"))
        self.assertEqual(lines[1], ("header", "+++ observed"))

    def test_identical_values_have_no_diff(self) -> None:
        self.assertEqual(diff_lines([1, 2], [1, 2]), [])


if __name__ == "__main__":
    unittest.main()
