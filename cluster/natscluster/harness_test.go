package natscluster

import (
	"context"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-knocker/knocker/cluster"
	"github.com/caddy-knocker/knocker/internal/testnats"
	"github.com/caddy-knocker/knocker/store"
)

var syncAlways = true

const testSecret = "0123456789abcdef0123456789abcdef-test"

// engine is an in-process nats-server with JetStream, fsyncing every
// write (sync_interval: always), on a loopback port kept across restarts.
type engine struct {
	t    testing.TB
	dir  string
	port int
	srv  *server.Server
}

func startEngine(t testing.TB) *engine {
	e := &engine{t: t, dir: t.TempDir(), port: -1}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *engine) start() {
	e.t.Helper()
	opts := testnats.Options(e.t)
	opts.Port, opts.StoreDir, opts.SyncAlways = e.port, e.dir, syncAlways
	e.srv = testnats.Start(e.t, opts)
	e.port = testnats.Port(e.srv)
}

func (e *engine) stop() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = nil
	}
}

func (e *engine) url() string { return "nats://127.0.0.1:" + strconv.Itoa(e.port) }

// node is one Caddy node's cluster side: a store and its replicator.
type node struct {
	t        testing.TB
	name     string
	path     string
	url      string
	st       *store.Store
	mod      *NATS
	r        *cluster.Replicator
	bans     chan netip.Addr
	forged   atomic.Int64
	events   chan store.Event // wakes waitFor
	evMu     sync.Mutex
	log      []store.Event
	whenDown string
	auth     func(*NATS) // sets credentials, if any
	cancel   func()
}

func newNode(t testing.TB, name, url string) *node {
	n := &node{t: t, name: name, url: url, path: filepath.Join(t.TempDir(), "whitelist.json"), bans: make(chan netip.Addr, 16)}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) start() {
	t := n.t
	t.Helper()
	st, err := store.Open(store.Options{Path: n.path, MaxEntries: 100000, CleanupInterval: time.Hour,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	n.st = st
	n.events = make(chan store.Event, 100000)
	n.cancel = st.Subscribe(func(ev store.Event) {
		n.evMu.Lock()
		n.log = append(n.log, ev)
		n.evMu.Unlock()
		select {
		case n.events <- ev:
		default:
		}
	})
	n.mod = &NATS{Config: cluster.Config{Secret: testSecret, Node: n.name, WhenDown: n.whenDown}, URLs: []string{n.url}}
	if n.auth != nil {
		n.auth(n.mod)
	}
	if err := n.mod.Provision(caddy.Context{Context: context.Background()}); err != nil {
		t.Fatal(err)
	}
	n.r, err = cluster.New(cluster.Options{
		Config: n.mod.ClusterConfig(), Driver: n.mod, MaxTTL: 86400,
		Logger:   zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(n.name),
		OnBan:    func(a netip.Addr, _ int64) { n.bans <- a },
		Observer: cluster.Observer{Rejected: func() { n.forged.Add(1) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.r.Start(st, n.path); err != nil {
		t.Fatal(err)
	}
}

// stop stops the node as Caddy would.
func (n *node) stop() {
	if n.r != nil {
		n.r.Stop()
		n.cancel()
		n.st.Close()
		n.r = nil
	}
}

// waitSynced waits for the first catch-up.
func (n *node) waitSynced() {
	n.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !n.r.State().Synced {
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: not synced after 20s: %+v", n.name, n.r.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor waits until cond holds on the node's store, checking after each
// of its events (and every 50ms, for expiry by the clock).
func (n *node) waitFor(what string, timeout time.Duration, cond func(*store.Store) bool) {
	n.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond(n.st) {
		select {
		case <-n.events:
		case <-tick.C:
		case <-deadline.C:
			n.t.Fatalf("%s: %s: not within %v (state %+v)", n.name, what, timeout, n.r.State())
		}
	}
}

// takeEvents returns the store's events since the last call.
func (n *node) takeEvents() []store.Event {
	n.evMu.Lock()
	defer n.evMu.Unlock()
	out := n.log
	n.log = nil
	return out
}

func (n *node) knock(ip string, ttl int64) (store.GrantResult, error) {
	p := netip.MustParsePrefix(ip)
	return n.r.Grant(context.Background(), p, time.Now().Unix()+ttl, store.GrantOptions{Owner: "phone", Client: p.Addr()})
}

func allowed(ip string) func(*store.Store) bool {
	a := netip.MustParseAddr(ip)
	return func(s *store.Store) bool { return s.Allowed(a, time.Now().Unix()) }
}

func denied(ip string) func(*store.Store) bool {
	a := netip.MustParseAddr(ip)
	return func(s *store.Store) bool { return !s.Allowed(a, time.Now().Unix()) }
}

// proxy is a TCP relay between a node and the engine that can blackhole
// traffic (a silent partition: no FIN, no RST) and heal.
type proxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	blocked bool
	conns   []net.Conn
	wake    *sync.Cond
}

func startProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wake = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.blocked = false
		p.wake.Broadcast()
		p.mu.Unlock()
	})
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

// pipe copies while not blocked; when blocked it holds the bytes.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.blocked {
			p.wake.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

// partition blackholes the link; heal lets the held bytes through again.
func (p *proxy) partition() {
	p.mu.Lock()
	p.blocked = true
	p.mu.Unlock()
}

// cut closes every relayed connection at once (a restarted router).
func (p *proxy) cut() {
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

func (p *proxy) heal() {
	p.mu.Lock()
	p.blocked = false
	p.wake.Broadcast()
	p.mu.Unlock()
}
