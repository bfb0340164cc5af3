//go:build ignore

// gen_icons draws the PNG app icons (the keyhole of icon.svg) at 192 and 512
// pixels: go run gen_icons.go (from web/). The output is committed.
package main

import (
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"os"
	"strconv"
)

func main() {
	for _, size := range []int{192, 512} {
		if err := write(size); err != nil {
			log.Fatal(err)
		}
	}
}

func write(size int) error {
	bg := color.RGBA{0x1f, 0x4e, 0x79, 0xff}
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	s := float64(size) / 64 // the SVG's 64-unit grid
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			u, v := (float64(x)+.5)/s, (float64(y)+.5)/s
			c := bg
			if math.Hypot(u-32, v-26) <= 9 || inTrapezoid(u, v) {
				c = color.RGBA{0xff, 0xff, 0xff, 0xff}
			}
			img.Set(x, y, c) // full-bleed square: valid as a maskable icon
		}
	}
	f, err := os.Create("icon-" + strconv.Itoa(size) + ".png")
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}

// inTrapezoid is the keyhole's stem: top 27..37 at v=30, bottom 24..40 at v=48.
func inTrapezoid(u, v float64) bool {
	if v < 30 || v > 48 {
		return false
	}
	t := (v - 30) / 18
	return u >= 27-3*t && u <= 37+3*t
}
