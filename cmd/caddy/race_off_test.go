//go:build !race

package main

// raceEnabled: the test binary is built with -race (the load it generates
// is then several times slower; the cluster tests use smaller counts).
const raceEnabled = false
