// Service worker: serves the app shell from cache so the page opens offline
// and installs as an app. API calls (/knock, /knock/status, ...) always go to
// the network: a cached answer about access would be a lie.
"use strict";

const CACHE = "knocker-shell-v1";
const SHELL = ["/", "/app.js", "/app.css", "/manifest.webmanifest", "/icon.svg", "/icon-192.png", "/icon-512.png"];

self.addEventListener("install", (event) => {
	event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
	event.waitUntil(
		caches.keys()
			.then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
			.then(() => self.clients.claim()),
	);
});

self.addEventListener("fetch", (event) => {
	const url = new URL(event.request.url);
	if (event.request.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) {
		return; // the network, untouched
	}
	// Network first, so a new version shows up at once; the cache when offline.
	// Cached by path: "/?return=..." (the portal) is the page "/", not a new
	// entry per URL.
	const key = url.origin + url.pathname;
	event.respondWith(
		fetch(event.request)
			.then((res) => {
				const copy = res.clone();
				if (res.ok) caches.open(CACHE).then((cache) => cache.put(key, copy));
				return res;
			})
			.catch(() => caches.match(key)),
	);
});
