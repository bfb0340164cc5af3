//go:build linux

package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// The chart is drawn from the measured numbers: plain SVG, no dependency.

type bar struct {
	Series string
	Value  float64
	Label  string // printed above the bar
}

type barGroup struct {
	Label string
	Bars  []bar
}

type panel struct {
	Title  string
	YLabel string
	Groups []barGroup
	Note   string
}

var seriesColors = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"}

func niceStep(max float64) float64 {
	if max <= 0 {
		return 1
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func fmtTick(v float64) string {
	switch {
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.1fM", v/1e6))
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1fk", v/1e3))
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return trimZero(fmt.Sprintf("%.2f", v))
	}
}

func trimZero(s string) string {
	for _, suf := range []string{"k", "M", ""} {
		if strings.HasSuffix(s, ".0"+suf) {
			return strings.TrimSuffix(s, ".0"+suf) + suf
		}
	}
	return s
}

// draw renders one panel into the box (x, y, w, h).
func (p panel) draw(sb *strings.Builder, x, y, w, h float64) {
	esc := html.EscapeString
	fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" font-size="15" font-weight="bold">%s</text>`+"\n", x, y+16, esc(p.Title))
	if p.Note != "" {
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" font-size="11" fill="#555">%s</text>`+"\n", x, y+32, esc(p.Note))
	}
	// Series legend.
	var series []string
	for _, g := range p.Groups {
		for _, b := range g.Bars {
			if b.Series != "" && !slices.Contains(series, b.Series) {
				series = append(series, b.Series)
			}
		}
	}
	lx := x + w
	for i := len(series) - 1; i >= 0; i-- {
		lx -= 14 + 7*float64(len(series[i])) + 16
		fmt.Fprintf(sb, `<rect x="%.1f" y="%.1f" width="11" height="11" fill="%s"/><text x="%.1f" y="%.1f" font-size="11">%s</text>`+"\n",
			lx, y+6, seriesColors[i%len(seriesColors)], lx+15, y+16, esc(series[i]))
	}

	top, bottom, left := y+48, y+h-42, x+58
	right := x + w - 10
	maxV := 0.0
	for _, g := range p.Groups {
		for _, b := range g.Bars {
			maxV = math.Max(maxV, b.Value)
		}
	}
	step := niceStep(maxV * 1.08)
	yMax := math.Ceil(maxV*1.08/step) * step
	if yMax <= 0 {
		yMax = 1
	}
	yOf := func(v float64) float64 { return bottom - (bottom-top)*v/yMax }
	for v := 0.0; v <= yMax+step/2; v += step {
		yy := yOf(v)
		fmt.Fprintf(sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" font-size="11" text-anchor="end" fill="#444">%s</text>`+"\n",
			left, yy, right, yy, left-6, yy+4, fmtTick(v))
	}
	fmt.Fprintf(sb, `<text transform="translate(%.1f,%.1f) rotate(-90)" font-size="11" text-anchor="middle" fill="#444">%s</text>`+"\n",
		x+12, (top+bottom)/2, esc(p.YLabel))
	fmt.Fprintf(sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, bottom, right, bottom)

	gw := (right - left) / float64(max(1, len(p.Groups)))
	for gi, g := range p.Groups {
		gx := left + gw*float64(gi)
		n := float64(max(1, len(g.Bars)))
		bw := math.Min(70, gw*0.7/n)
		start := gx + (gw-bw*n)/2
		for bi, b := range g.Bars {
			si := 0
			for i, s := range series {
				if s == b.Series {
					si = i
				}
			}
			bx := start + bw*float64(bi)
			by := yOf(b.Value)
			fmt.Fprintf(sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
				bx+1, by, bw-2, bottom-by, seriesColors[si%len(seriesColors)], esc(g.Label+" "+b.Series+": "+b.Label))
			fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" font-size="10.5" text-anchor="middle">%s</text>`+"\n", bx+bw/2, by-4, esc(b.Label))
		}
		for li, line := range strings.Split(g.Label, "\n") {
			fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" font-size="11.5" text-anchor="middle">%s</text>`+"\n", gx+gw/2, bottom+16+14*float64(li), esc(line))
		}
	}
}

// chartSVG draws requests/s and latency of (a)-(d) and durable knock
// throughput against the number of stored grants.
func (b *bench) chartSVG() string {
	const W, H = 1000.0, 940.0
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica, Arial, sans-serif">`+"\n", W, H, W, H)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="20" y="28" font-size="18" font-weight="bold">Knocker for Caddy: load benchmark</text>`+"\n")
	fmt.Fprintf(&sb, `<text x="20" y="47" font-size="12" fill="#444">%s</text>`+"\n", html.EscapeString(fmt.Sprintf(
		"%s, %d cores; wrk -t%d -c%d, %s per run (median of %d rounds); %s other grants stored; generated %s",
		b.m.CPUModel, b.m.Cores, b.o.threads, b.o.conns, b.o.duration, b.o.rounds, fmtCount(b.o.grantsOther), b.res.Finished.UTC().Format("2006-01-02 15:04 UTC"))))

	label := map[string]string{"a": "(a) unprotected", "b": "(b) knocker,\nwhitelisted", "c": "(c) knocker,\nnot whitelisted (401)", "d": "(d) forward_auth\n→ /verify"}
	var rps, lat []barGroup
	for _, c := range cases {
		m := b.median(c.ID)
		rps = append(rps, barGroup{Label: label[c.ID], Bars: []bar{{Series: "requests/s", Value: m.RPS, Label: fmt.Sprintf("%.0f", m.RPS)}}})
		lat = append(lat, barGroup{Label: label[c.ID], Bars: []bar{
			{Series: "p50", Value: float64(m.P50) / 1e6, Label: fmt.Sprintf("%.2f", float64(m.P50)/1e6)},
			{Series: "p99", Value: float64(m.P99) / 1e6, Label: fmt.Sprintf("%.2f", float64(m.P99)/1e6)},
		}})
	}
	panel{Title: "Requests per second (higher is better)", YLabel: "requests/s",
		Note:   fmt.Sprintf("b/a = %.3f (goal ≥ 0.97), b/d = %.2f (goal ≥ 2.5): medians over rounds of the ratios within each round", b.ratio("b", "a"), b.ratio("b", "d")),
		Groups: rps}.draw(&sb, 20, 60, W-40, 280)
	panel{Title: "Latency (lower is better)", YLabel: "milliseconds", Groups: lat}.draw(&sb, 20, 350, W-40, 280)

	var kg []barGroup
	for _, n := range []int{b.o.grantsSmall, b.o.grantsOther} {
		g := barGroup{Label: fmt.Sprintf("%s grants stored", fmtCount(n))}
		for _, k := range b.res.Knocks {
			if k.Grants == n {
				g.Bars = append(g.Bars, bar{Series: fmt.Sprintf("concurrency %d", k.Conns), Value: k.Res.RPS, Label: fmt.Sprintf("%.0f", k.Res.RPS)})
			}
		}
		kg = append(kg, g)
	}
	panel{Title: "Durable knocks per second vs. grants stored (fsync before each 200)", YLabel: "knocks/s",
		Note: knockNote(b), Groups: kg}.draw(&sb, 20, 640, W-40, 290)
	sb.WriteString("</svg>\n")
	return sb.String()
}

func knockNote(b *bench) string {
	var parts []string
	for _, c := range b.o.knockConns {
		small, big := b.knock(b.o.grantsSmall, c).RPS, b.knock(b.o.grantsOther, c).RPS
		parts = append(parts, fmt.Sprintf("concurrency %d: %.2f×", c, safeDiv(small, big)))
	}
	return fmt.Sprintf("slowdown with %s vs. %s grants (goal ≤ 1.5×): %s", fmtCount(b.o.grantsOther), fmtCount(b.o.grantsSmall), strings.Join(parts, ", "))
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func fmtCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	default:
		return fmt.Sprint(n)
	}
}
