package cli

import (
	"fmt"
	"io"
	"strings"

	"rsc.io/qr"
)

// qrQuietZone is the light border around a QR code, in modules (ISO/IEC 18004
// asks for four).
const qrQuietZone = 4

// drawQR draws data as a QR code with Unicode half blocks, two rows of
// modules to a line of text. Light modules are drawn as blocks, so the code
// reads on a terminal with a dark background, as qrencode's UTF8 mode does.
func drawQR(w io.Writer, data []byte) error {
	code, err := qr.Encode(string(data), qr.M)
	if err != nil {
		return fmt.Errorf("drawing the QR code: %v", err)
	}
	n := code.Size + 2*qrQuietZone
	light := func(x, y int) bool {
		x, y = x-qrQuietZone, y-qrQuietZone
		if x < 0 || y < 0 || x >= code.Size || y >= code.Size {
			return true
		}
		return !code.Black(x, y)
	}
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		for x := 0; x < n; x++ {
			top, bottom := light(x, y), y+1 >= n || light(x, y+1)
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	_, err = io.WriteString(w, b.String())
	return err
}
