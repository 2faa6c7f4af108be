package awsiid

import "errors"

// MaxSignatureSize bounds the DER (or BER) signature: AWS's are about 1.5
// KiB.
const MaxSignatureSize = 16 << 10

// maxBERDepth bounds the nesting of a signature's elements; a PKCS#7
// SignedData nests about ten deep.
const maxBERDepth = 32

var errBER = errors.New("signature is not well-formed BER")

// checkBER reports whether b is exactly one well-formed BER element whose
// every child lies within its parent, nested at most maxBERDepth deep. It
// runs in time linear in len(b).
//
// The PKCS#7 library converts BER to DER before parsing, and its
// converter re-reads the bytes of an indefinite-length child that overruns
// a definite-length parent: crafted input of a few KiB then takes it
// exponential time. Input that passes this check is strictly nested, which
// the converter handles in one pass.
func checkBER(b []byte) error {
	if len(b) > MaxSignatureSize {
		return errors.New("signature is too large")
	}
	end, err := walkBER(b, 0, len(b), 0)
	if err != nil {
		return err
	}
	if end != len(b) {
		return errors.New("signature has data after its PKCS#7 element")
	}
	return nil
}

// walkBER checks the element at b[off:], which must end by limit, and
// returns the offset just past it.
func walkBER(b []byte, off, limit, depth int) (int, error) {
	if depth > maxBERDepth {
		return 0, errBER
	}
	if off >= limit {
		return 0, errBER
	}
	tag := b[off]
	off++
	if tag&0x1f == 0x1f { // high tag number: base-128 digits, last without 0x80
		for n := 0; ; n++ {
			if off >= limit || n >= 4 {
				return 0, errBER
			}
			c := b[off]
			off++
			if c&0x80 == 0 {
				break
			}
		}
	}
	if off >= limit {
		return 0, errBER
	}
	constructed := tag&0x20 != 0
	l := b[off]
	off++
	if l == 0x80 { // indefinite length: children up to an end-of-contents
		if !constructed {
			return 0, errBER
		}
		for {
			if limit-off >= 2 && b[off] == 0 && b[off+1] == 0 {
				return off + 2, nil
			}
			var err error
			if off, err = walkBER(b, off, limit, depth+1); err != nil {
				return 0, err
			}
		}
	}
	length := int(l)
	if l > 0x80 {
		n := int(l & 0x7f)
		if n > 3 || limit-off < n || b[off] == 0 {
			return 0, errBER
		}
		length = 0
		for range n {
			length = length<<8 | int(b[off])
			off++
		}
	}
	if length > limit-off {
		return 0, errBER
	}
	end := off + length
	if constructed {
		for off < end {
			var err error
			if off, err = walkBER(b, off, end, depth+1); err != nil {
				return 0, err
			}
		}
	}
	return end, nil
}
