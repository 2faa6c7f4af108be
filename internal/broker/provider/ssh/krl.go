package ssh

import (
	"encoding/binary"
	"slices"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// The OpenSSH key revocation list format (PROTOCOL.krl in OpenSSH): a
// header, then sections. Signet writes one certificates section per CA,
// holding a serial-number list: what sshd's RevokedKeys needs to refuse a
// certificate by its serial. KRL signatures are optional and sshd does not
// check them; Signet serves the KRL over HTTPS instead.
const (
	krlMagic         = 0x5353484b524c0a00 // "SSHKRL\n\0"
	krlFormatVersion = 1

	krlSectionCertificates   = 1
	krlCertSectionSerialList = 0x20
)

// CARevocations is what one CA revokes: certificate serial numbers.
type CARevocations struct {
	CA      gossh.PublicKey
	Serials []uint64
}

// MarshalKRL encodes an OpenSSH KRL revoking, for each CA, the listed
// serials. version is the KRL's version number (monotonic); generated its
// generation time. Serials are written sorted and without duplicates;
// serial 0 (which OpenSSH cannot revoke) is dropped.
func MarshalKRL(version uint64, generated time.Time, comment string, cas []CARevocations) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint64(b, krlMagic)
	b = binary.BigEndian.AppendUint32(b, krlFormatVersion)
	b = binary.BigEndian.AppendUint64(b, version)
	b = binary.BigEndian.AppendUint64(b, uint64(max(generated.Unix(), 0)))
	b = binary.BigEndian.AppendUint64(b, 0) // flags
	b = appendString(b, nil)                // reserved
	b = appendString(b, []byte(comment))
	for _, ca := range cas {
		serials := slices.Clone(ca.Serials)
		slices.Sort(serials)
		serials = slices.Compact(serials)
		serials = slices.DeleteFunc(serials, func(s uint64) bool { return s == 0 })
		var sec []byte
		sec = appendString(sec, ca.CA.Marshal())
		sec = appendString(sec, nil) // reserved
		if len(serials) > 0 {
			var list []byte
			for _, s := range serials {
				list = binary.BigEndian.AppendUint64(list, s)
			}
			sec = append(sec, krlCertSectionSerialList)
			sec = appendString(sec, list)
		}
		b = append(b, krlSectionCertificates)
		b = appendString(b, sec)
	}
	return b
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
