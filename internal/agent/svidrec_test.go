package agent

import (
	"bytes"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"
)

// TestSVIDRecPacking: the chain, key and serial packed in one record come
// back as they went in, the serial as the lowercase hex without leading
// zeros that big.Int.Text(16) (and the audit log) writes.
func TestSVIDRecPacking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	serials := []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(0x0f), big.NewInt(0x10), big.NewInt(0xabc), big.NewInt(0x1000)}
	for range 200 {
		b := make([]byte, 1+rng.IntN(20))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		serials = append(serials, new(big.Int).SetBytes(b))
	}
	chain, key := []byte("chain-der"), []byte("pkcs8-key")
	now := time.Unix(1_800_000_000, 123)
	for _, sn := range serials {
		r := newSVIDRec(chain, key, sn, now, now.Add(-time.Minute), now.Add(time.Hour))
		if want := sn.Text(16); r.serial() != want {
			t.Errorf("serial() of %s = %q, want %q", sn.Text(16), r.serial(), want)
		}
		if !bytes.Equal(r.chainDER(), chain) || !bytes.Equal(r.keyDER(), key) {
			t.Fatalf("chainDER(), keyDER() = %q, %q; want %q, %q", r.chainDER(), r.keyDER(), chain, key)
		}
		if cap(r.chainDER()) != len(chain) || cap(r.keyDER()) != len(key) {
			t.Fatal("chainDER() or keyDER() can be appended to over the next field")
		}
	}
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{now, now.UnixNano()},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), math.MaxInt64},
		{time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), math.MinInt64},
	} {
		if got := nanos(tc.t); got != tc.want {
			t.Errorf("nanos(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}
