package rules

import "testing"

func TestIsControl(t *testing.T) {
	for _, r := range []rune{0, '\n', '\t', 0x1b, 0x7f, 0x85, 0x9f, 0x2028, 0x2029, 0x202e, 0x2066, 0x200f, 0x061c} {
		if !IsControl(r) {
			t.Errorf("IsControl(%U) = false", r)
		}
	}
	for _, r := range []rune{' ', 'a', '~', 0xa0, 'é', '日', 0xfffd} {
		if IsControl(r) {
			t.Errorf("IsControl(%U) = true", r)
		}
	}
}
