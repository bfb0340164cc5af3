// Package webapp is the knock web app: plain HTML, CSS and JS embedded in
// the binary, so it works on an offline LAN and needs no build step.
package webapp

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"mime"
	"net/http"
	"path"
	"strconv"
)

//go:embed web/index.html web/app.js web/app.css web/sw.js web/manifest.webmanifest web/icon.svg web/icon-192.png web/icon-512.png
var webFiles embed.FS

// webAsset is a ready-to-serve file.
type webAsset struct {
	body        []byte
	contentType string
	etag        string
}

// webAssets maps request paths to files; "/" is the app page.
var webAssets = loadWebAssets()

// webCSP allows nothing but this origin: no inline script, no third party.
const webCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func loadWebAssets() map[string]webAsset {
	entries, err := webFiles.ReadDir("web")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	assets := make(map[string]webAsset, len(entries)+1)
	for _, e := range entries {
		body, err := webFiles.ReadFile("web/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(e.Name()))
		switch path.Ext(e.Name()) {
		case ".webmanifest":
			ctype = "application/manifest+json"
		case ".js":
			ctype = "text/javascript; charset=utf-8"
		}
		a := webAsset{body: body, contentType: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		if e.Name() == "index.html" {
			assets["/"] = a
		} else {
			assets["/"+e.Name()] = a
		}
	}
	return assets
}

// Serve serves a web app file for GET and HEAD; it reports false when the
// request is not for one.
func Serve(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	a, ok := webAssets[r.URL.Path]
	if !ok {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache") // revalidate: a new version shows at once
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", webCSP)
	if r.Header.Get("If-None-Match") == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(a.body)
	}
	return true
}
