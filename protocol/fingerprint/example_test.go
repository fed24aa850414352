package fingerprint_test

import (
	"encoding/hex"
	"fmt"

	"github.com/doorless/doorless/protocol/fingerprint"
)

func Example() {
	// Identity keys of the two sides (serialized: 0x05 and 32 bytes) and their stable
	// identifiers; these are libsignal's test vectors.
	alice, _ := hex.DecodeString("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
	bob, _ := hex.DecodeString("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")

	onAlicesPhone, err := fingerprint.New(fingerprint.VersionServiceID, fingerprint.Iterations,
		[]byte("+14152222222"), alice, []byte("+14153333333"), bob)
	if err != nil {
		panic(err)
	}
	onBobsPhone, err := fingerprint.New(fingerprint.VersionServiceID, fingerprint.Iterations,
		[]byte("+14153333333"), bob, []byte("+14152222222"), alice)
	if err != nil {
		panic(err)
	}

	// Both phones show the same 60 digits...
	fmt.Println(onAlicesPhone.Displayable())
	fmt.Println(onBobsPhone.Displayable() == onAlicesPhone.Displayable())

	// ...and Alice scanning Bob's QR code confirms the match.
	ok, err := onAlicesPhone.CompareScanned(onBobsPhone.Scannable())
	fmt.Println(ok, err)
	// Output:
	// 300354477692869396892869876765458257569162576843440918079131
	// true
	// true <nil>
}
