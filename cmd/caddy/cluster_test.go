package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/caddy-knocker/knocker/internal/knockapi"
	"github.com/caddy-knocker/knocker/internal/testutil"
)

// The cluster tests run three (one test four) cmd/caddy processes that
// share one whitelist through a nats-server process (JetStream, fsyncing
// every write), each with its own home, whitelist file, admin endpoint,
// knock site and gate, all on 127.0.0.1. They kill -9 nodes and the engine
// and check that every knock answered 200 is honoured by every node. They
// wait for conditions (polling with deadlines), never for fixed times, and
// assert no timing: the figures they log report them.

const (
	clusterKey    = "cluster-test-key-0123456789abcdef"
	clusterSecret = "cluster-test-secret-0123456789abcdef-0123456789"
	clusterBucket = "knocker"
	// clusterWait bounds the wait for anything the cluster propagates:
	// generous, since the machine may be loaded.
	clusterWait = 10 * time.Second
)

// natsServerBinary is KNOCKER_NATS_SERVER (the test command builds it
// once) or nats-server built now from the version go.mod pins.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("KNOCKER_NATS_SERVER"); bin != "" {
		return bin
	}
	return natsBuild.get(t, "nats-server", "github.com/nats-io/nats-server/v2")
}

var natsBuild buildOnce

// natsEngine is a nats-server process with JetStream on ports.clusterNATS,
// its store in a temp dir kept across restarts.
type natsEngine struct {
	t    *testing.T
	bin  string
	dir  string
	cmd  *exec.Cmd
	done chan error
	outs []*bytes.Buffer // one per run, read only once it exited
}

func startEngine(t *testing.T) *natsEngine {
	t.Helper()
	e := &natsEngine{t: t, bin: natsServerBinary(t), dir: t.TempDir()}
	writeConfig(t, e.dir, "nats.conf", fmt.Sprintf("jetstream {\n\tstore_dir: %q\n\tsync_interval: always\n}\n",
		filepath.Join(e.dir, "jetstream")))
	t.Cleanup(func() {
		e.kill()
		if t.Failed() {
			for i, out := range e.outs {
				t.Logf("nats-server output (run %d):\n%s", i+1, out)
			}
		}
	})
	e.start()
	return e
}

func (e *natsEngine) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ports.clusterNATS) }

// start runs nats-server and waits until JetStream answers.
func (e *natsEngine) start() {
	t := e.t
	t.Helper()
	cmd := exec.Command(e.bin, "-c", filepath.Join(e.dir, "nats.conf"), "-a", "127.0.0.1", "-p", strconv.Itoa(ports.clusterNATS))
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	e.cmd, e.done = cmd, done
	e.outs = append(e.outs, out)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("nats-server exited: %v\n%s", err, out)
		default:
		}
		err := jetStreamUp(e.url())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server's JetStream not answering within 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill kills the engine with SIGKILL, if it runs, and waits for it.
func (e *natsEngine) kill() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGKILL)
	<-e.done
	e.cmd = nil
}

func jetStreamUp(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// clusterNode is one Caddy node: its home, whitelist and config stay
// across restarts.
type clusterNode struct {
	name      string
	ports     clusterNodePorts
	home, dir string
	whitelist string
	proc      *caddyProcess
	started   time.Time // when proc was started
}

// nodeOptions vary the nodes' configs.
type nodeOptions struct {
	maxEntries int  // default 100000
	noCluster  bool // leave the cluster block out
}

func (n *clusterNode) knockURL() string { return siteURL(n.ports.knock) }
func (n *clusterNode) gateURL() string  { return siteURL(n.ports.gate) + "/" }
func (n *clusterNode) adminURL() string { return siteURL(n.ports.admin) }

// config is the node's Caddyfile: the knocker app with one key, a failure
// window of 3, and the cluster on engineURL (unless o.noCluster).
func (n *clusterNode) config(engineURL string, o nodeOptions) string {
	if o.maxEntries == 0 {
		o.maxEntries = 100000
	}
	extra := "rate_limit {\n\t\t\tfailure 3\n\t\t}"
	if !o.noCluster {
		extra += fmt.Sprintf(`
		cluster nats {
			url %s
			secret {env.KNOCKER_CLUSTER_SECRET}
			node %s
			when_down refuse
		}`, engineURL, n.name)
	}
	global := testutil.Preamble{
		Admin:          fmt.Sprintf("127.0.0.1:%d", n.ports.admin),
		DefaultBind:    "127.0.0.1",
		TrustedProxies: "127.0.0.1/32",
		Knocker: &testutil.Knocker{
			WhitelistFile: n.whitelist,
			MaxEntries:    o.maxEntries,
			Keys:          []testutil.Key{{Name: "k1", Secret: clusterKey, MaxTTL: "1h"}},
			Extra:         extra,
		},
	}
	return global.String() + fmt.Sprintf(`http://:%d {
	knock
}
http://:%d {
	knocker
	respond "admitted"
}
`, n.ports.knock, n.ports.gate)
}

// testCluster is an engine and the nodes following it.
type testCluster struct {
	t      *testing.T
	bin    string
	engine *natsEngine
	opts   nodeOptions
	nodes  []*clusterNode // a, b, c, then any added
	client *http.Client   // for the test's own checks
}

// newCluster starts an engine and nodes a, b and c, and waits until each
// has caught up.
func newCluster(t *testing.T, o nodeOptions) *testCluster {
	t.Helper()
	t.Setenv("KNOCKER_CLUSTER_SECRET", clusterSecret)
	cl := &testCluster{t: t, bin: caddyBinary(t), opts: o, client: loadClient()}
	cl.engine = startEngine(t)
	t.Cleanup(cl.client.CloseIdleConnections)
	for range 3 {
		cl.addNode().start(t, cl)
	}
	for _, n := range cl.nodes {
		n.waitReady(t)
	}
	return cl
}

// addNode makes the next node (not started).
func (cl *testCluster) addNode() *clusterNode {
	i := len(cl.nodes)
	dir := cl.t.TempDir()
	n := &clusterNode{name: string(rune('a' + i)), ports: ports.clusterNodes[i], home: cl.t.TempDir(), dir: dir,
		whitelist: filepath.Join(dir, "whitelist.json")}
	cl.nodes = append(cl.nodes, n)
	return n
}

// start starts the node's Caddy on its config (written now) and waits until
// its sites answer.
func (n *clusterNode) start(t *testing.T, cl *testCluster) {
	t.Helper()
	config := writeConfig(t, n.dir, "Caddyfile", n.config(cl.engine.url(), cl.opts))
	n.started = time.Now()
	n.proc = startCaddy(t, cl.bin, n.home, config)
	n.proc.waitUp(t, n.knockURL()+"/health", n.gateURL())
}

// waitReady waits (30 s) until the node's /ready answers 200 with the
// cluster connected and caught up.
func (n *clusterNode) waitReady(t *testing.T) clusterHealth {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		select {
		case err := <-n.proc.done:
			n.proc.done <- err
			t.Fatalf("node %s exited: %v", n.name, err)
		default:
		}
		code, h, err := readiness(c, n)
		if err == nil && code == http.StatusOK && h.Cluster != nil && h.Cluster.Connected && h.Cluster.Synced {
			return h
		}
		last = fmt.Sprintf("%d %+v %v", code, h, err)
		if time.Now().After(deadline) {
			t.Fatalf("node %s not ready within 30s: last /ready %s", n.name, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill kills the node's Caddy with SIGKILL and waits for it.
func (n *clusterNode) kill(t *testing.T) {
	t.Helper()
	if err := n.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n.proc.waitExit(t)
}

// stop stops the node's Caddy with SIGTERM; it must exit cleanly.
func (n *clusterNode) stop(t *testing.T) {
	t.Helper()
	if err := n.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n.proc.waitExit(t); err != nil {
		t.Fatalf("node %s did not stop cleanly on SIGTERM: %v", n.name, err)
	}
}

// clusterHealth is the body of /ready in cluster mode.
type clusterHealth struct {
	Status  string `json:"status"`
	Error   string `json:"error"`
	Cluster *struct {
		Node        string `json:"node"`
		Connected   bool   `json:"connected"`
		Synced      bool   `json:"synced"`
		Revision    uint64 `json:"revision"`
		Lag         uint64 `json:"lag"`
		Unpublished int    `json:"unpublished"`
	} `json:"cluster"`
}

// The helpers below fail no test: load goroutines use them.

func readiness(c *http.Client, n *clusterNode) (int, clusterHealth, error) {
	var h clusterHealth
	code, body, err := getAs(c, n.knockURL()+"/ready", "127.0.0.1")
	if err != nil {
		return code, h, err
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		return code, h, fmt.Errorf("/ready: %v: %q", err, body)
	}
	return code, h, nil
}

// admits asks n's gate whether it admits client ip.
func admits(c *http.Client, n *clusterNode, ip string) (bool, error) {
	code, body, err := getAs(c, n.gateURL(), ip)
	switch {
	case err != nil:
		return false, err
	case code == http.StatusOK && body == "admitted":
		return true, nil
	case code == http.StatusUnauthorized:
		return false, nil
	}
	return false, fmt.Errorf("gate of %s for %s: %d %q", n.name, ip, code, body)
}

// waitAdmits polls n's gate until its decision for ip is want, at most
// until deadline; it checks at least once.
func waitAdmits(c *http.Client, n *clusterNode, ip string, want bool, deadline time.Time) error {
	for {
		got, err := admits(c, n, ip)
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s's gate: %s admitted %v, want %v (waited until %s)", n.name, ip, got, want, deadline.Format("15:04:05.000"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitAll is waitAdmits for every node of nodes and ip of ips, 16 at a
// time, all by one deadline clusterWait from now: every ip was granted (or
// revoked) before the call. It returns the failures.
func waitAll(nodes []*clusterNode, ips []string, want bool) []string {
	c := loadClient()
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(clusterWait)
	work := make(chan string)
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ip := range work {
				for _, n := range nodes {
					if err := waitAdmits(c, n, ip, want, deadline); err != nil {
						mu.Lock()
						failures = append(failures, err.Error())
						mu.Unlock()
					}
				}
			}
		}()
	}
	for _, ip := range ips {
		work <- ip
	}
	close(work)
	wg.Wait()
	return failures
}

// grantsOf lists n's grants through its admin API: entry -> expires_at.
func grantsOf(c *http.Client, n *clusterNode) (map[string]int64, error) {
	code, body, err := getAs(c, n.adminURL()+"/knocker/grants", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s/knocker/grants: %d %q", n.name, code, body)
	}
	var list []struct {
		Entry     string `json:"entry"`
		ExpiresAt int64  `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, fmt.Errorf("GET %s/knocker/grants: %v", n.name, err)
	}
	out := make(map[string]int64, len(list))
	for _, g := range list {
		out[g.Entry] = g.ExpiresAt
	}
	return out, nil
}

// waitSameGrants waits until every node lists the same grants with the
// same expiries, and returns them.
func (cl *testCluster) waitSameGrants(nodes ...*clusterNode) map[string]int64 {
	t := cl.t
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		var sets []map[string]int64
		var err error
		for _, n := range nodes {
			var g map[string]int64
			if g, err = grantsOf(cl.client, n); err != nil {
				break
			}
			sets = append(sets, g)
		}
		same := err == nil
		for i := 1; same && i < len(sets); i++ {
			same = maps.Equal(sets[0], sets[i])
		}
		if same {
			return sets[0]
		}
		if time.Now().After(deadline) {
			var desc []string
			for i, s := range sets {
				desc = append(desc, fmt.Sprintf("%s: %v", nodes[i].name, sortedKeys(s)))
			}
			t.Fatalf("the nodes did not converge to the same grants within %v (%v): %s", clusterWait, err, strings.Join(desc, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sortedKeys(m map[string]int64) []string { return slices.Sorted(maps.Keys(m)) }

// percentile is the p-quantile (0 < p <= 1) of sorted (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// knockMust knocks on n as ip for ttl and fails the test unless it is
// granted for ip.
func knockMust(t *testing.T, c *http.Client, n *clusterNode, ip string, ttl int) knockAnswer {
	t.Helper()
	code, ans, err := knockAs(c, n.knockURL(), clusterKey, ip, ttl)
	if err != nil || code != http.StatusOK || ans.WhitelistedEntry != ip {
		t.Fatalf("knock on %s as %s: %d %+v %v", n.name, ip, code, ans, err)
	}
	return ans
}

// isClusterDown reports whether a knock's answer is when_down refuse's: 503
// with the error body {"error": knockapi.MsgClusterDown}.
func isClusterDown(code int, body string) bool {
	var e struct {
		Error string `json:"error"`
	}
	return code == http.StatusServiceUnavailable && json.Unmarshal([]byte(body), &e) == nil && e.Error == knockapi.MsgClusterDown
}

// knockRaw knocks for ip's own address with key (ttl 600) and returns the
// status and the raw body.
func knockRaw(c *http.Client, n *clusterNode, key, ip string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, n.knockURL()+"/knock", strings.NewReader(`{"ttl": 600}`))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("X-Forwarded-For", ip)
	req.Header.Set("Content-Type", "application/json")
	resp, err := testutil.Do(c, req)
	return resp.Status, resp.Body, err
}

// TestClusterPropagation: knocks answered 200 on a are admitted by b's and
// c's gates. For each knock, one at a time, b's and c's gates are polled
// back to back from the moment a's 200 arrived until they admit the
// address: the figure is that time, so its resolution is one gate request
// (also reported).
func TestClusterPropagation(t *testing.T) {
	knocks := 1000
	if raceEnabled {
		knocks = 200
	}
	cl := newCluster(t, nodeOptions{})
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]

	type job struct {
		ip    string
		acked time.Time
	}
	type result struct {
		d   time.Duration
		err error
	}
	// poller polls n's gate for each job on its own keep-alive connection.
	poller := func(n *clusterNode) (chan<- job, <-chan result) {
		jobs, results := make(chan job), make(chan result)
		go func() {
			client := loadClient()
			defer client.CloseIdleConnections()
			for j := range jobs {
				deadline := j.acked.Add(clusterWait)
				var r result
				for {
					ok, err := admits(client, n, j.ip)
					if err != nil {
						r.err = err
						break
					}
					if ok {
						r.d = time.Since(j.acked)
						break
					}
					if time.Now().After(deadline) {
						r.err = fmt.Errorf("%s not admitted by %s within %v of a's 200", j.ip, n.name, clusterWait)
						break
					}
				}
				results <- r
			}
		}()
		return jobs, results
	}
	jobsB, resultsB := poller(b)
	jobsC, resultsC := poller(c)
	defer close(jobsB)
	defer close(jobsC)

	// The resolution: how long one gate request takes here.
	rtt := time.Now()
	for range 100 {
		if ok, err := admits(cl.client, b, "10.20.255.1"); err != nil || ok {
			t.Fatalf("a never-knocked address: admitted %v, %v", ok, err)
		}
	}
	rttMean := time.Since(rtt) / 100

	var all, onB, onC []time.Duration
	for i := range knocks {
		ip := fmt.Sprintf("10.20.%d.%d", i/250, i%250+1)
		knockMust(t, cl.client, a, ip, 600)
		acked := time.Now()
		jobsB <- job{ip, acked}
		jobsC <- job{ip, acked}
		rb, rc := <-resultsB, <-resultsC
		for _, r := range []result{rb, rc} {
			if r.err != nil {
				t.Fatalf("knock %d: %v", i, r.err)
			}
		}
		onB, onC = append(onB, rb.d), append(onC, rc.d)
		all = append(all, rb.d, rc.d)
	}
	for _, ds := range [][]time.Duration{all, onB, onC} {
		slices.Sort(ds)
	}
	t.Logf("figure: cluster propagation over %d knocks: p50 %v p99 %v max %v (from each 200 on a to the first admission by b's and by c's gate, %d samples; b: p50 %v p99 %v, c: p50 %v p99 %v; one gate request takes %v here, the resolution)",
		knocks, percentile(all, 0.5), percentile(all, 0.99), all[len(all)-1], len(all),
		percentile(onB, 0.5), percentile(onB, 0.99), percentile(onC, 0.5), percentile(onC, 0.99), rttMean)
}

// TestClusterKillAnsweringNode: concurrent knockers on a, kill -9 of a at a
// random moment once knocks are being acknowledged. The engine acknowledged
// every knock a answered 200 before a answered: b and c must admit each,
// and a, restarted, catches up and admits every one of every round.
func TestClusterKillAnsweringNode(t *testing.T) {
	rounds, knockers := 20, 8 // the figure: 20 node kills
	if raceEnabled {
		rounds = 3
	}
	cl := newCluster(t, nodeOptions{})
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]

	var all []string
	cutOff := 0
	for round := range rounds {
		client := loadClient()
		var (
			mu       sync.Mutex
			acks     []string
			other    []string
			firstAck = make(chan struct{})
			once     sync.Once
			stop     = make(chan struct{})
			wg       sync.WaitGroup
		)
		for g := range knockers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < 4096; n++ {
					select {
					case <-stop:
						return
					default:
					}
					ip := fmt.Sprintf("10.%d.%d.%d", 30+round, g*16+n/256, n%256)
					code, ans, err := knockAs(client, a.knockURL(), clusterKey, ip, 600)
					mu.Lock()
					switch {
					case err != nil:
						cutOff++ // never answered: the kill
					case code == http.StatusOK && ans.WhitelistedEntry == ip:
						acks = append(acks, ip)
						once.Do(func() { close(firstAck) })
					default:
						other = append(other, fmt.Sprintf("%s: %d %+v", ip, code, ans))
					}
					mu.Unlock()
					if err != nil {
						<-stop
						return
					}
				}
			}()
		}
		select {
		case <-firstAck:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no knock acknowledged within 30s", round)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		a.kill(t)
		close(stop)
		wg.Wait()
		client.CloseIdleConnections()
		if len(other) > 0 {
			t.Fatalf("round %d: knocks answered neither 200 nor cut off: %v", round, other[:min(len(other), 10)])
		}
		if failures := waitAll([]*clusterNode{b, c}, acks, true); len(failures) > 0 {
			t.Fatalf("round %d: %d of %d knocks a acknowledged before kill -9 not admitted by b and c: %v",
				round, len(failures), len(acks), failures[:min(len(failures), 10)])
		}
		all = append(all, acks...)

		a.start(t, cl)
		h := a.waitReady(t)
		if failures := waitAll([]*clusterNode{a}, all, true); len(failures) > 0 {
			t.Fatalf("round %d: a, restarted, does not admit %d of the %d knocks acknowledged so far: %v",
				round, len(failures), len(all), failures[:min(len(failures), 10)])
		}
		t.Logf("round %d: %d knocks acknowledged before kill -9, all admitted by b and c, and by a after its restart (ready at revision %d)",
			round, len(acks), h.Cluster.Revision)
	}
	// A knock cut off by the kill may still have reached the engine: then
	// every node holds it, as every node holds all the others.
	held := cl.waitSameGrants(a, b, c)
	for _, ip := range all {
		if _, ok := held[ip]; !ok {
			t.Fatalf("%s acknowledged but not listed by the nodes' admin API", ip)
		}
	}
	t.Logf("figure: cluster kill -9 of the answering node: %d rounds, %d acks, %d lost (every 200 admitted by the two other nodes and by the restarted node), %d knocks cut off by the kill (not answered, not counted; %d reached the engine all the same, held by all three nodes alike)",
		rounds, len(all), 0, cutOff, len(held)-len(all))
}

// TestClusterEngineKill: kill -9 of the engine while knockers run on a.
// Every knock answered 200 survives the engine's restart (b and c, which
// resume, and a fresh node d, which reads everything, admit it); while the
// engine is down the gates keep serving what they hold, knocks get 503
// (when_down refuse) and /ready is 503.
func TestClusterEngineKill(t *testing.T) {
	rounds, knockers := 5, 8 // and 5 engine kills
	if raceEnabled {
		rounds = 2
	}
	cl := newCluster(t, nodeOptions{})
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	const earlier = "192.0.2.10"
	knockMust(t, cl.client, a, earlier, 3600)
	if f := waitAll([]*clusterNode{b, c}, []string{earlier}, true); len(f) > 0 {
		t.Fatal(f)
	}

	var all []string
	refused, outageChecks := 0, 0
	var backMax time.Duration
	for round := range rounds {
		client := loadClient()
		var (
			mu       sync.Mutex
			acks     []string
			other    []string
			firstAck = make(chan struct{})
			once     sync.Once
			stop     = make(chan struct{})
			wg       sync.WaitGroup
			next     atomic.Int64
		)
		for range knockers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					n := next.Add(1)
					ip := fmt.Sprintf("10.%d.%d.%d", 60+round, n/256, n%256)
					code, body, err := knockRaw(client, a, clusterKey, ip)
					mu.Lock()
					switch {
					case err != nil:
						other = append(other, fmt.Sprintf("%s: %v", ip, err))
					case code == http.StatusOK:
						acks = append(acks, ip)
						once.Do(func() { close(firstAck) })
					case isClusterDown(code, body):
						refused++
					default:
						other = append(other, fmt.Sprintf("%s: %d %s", ip, code, body))
					}
					mu.Unlock()
				}
			}()
		}
		select {
		case <-firstAck:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no knock acknowledged within 30s", round)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		cl.engine.kill()

		// The outage: a notices, /ready says so on every node.
		for _, n := range []*clusterNode{a, b, c} {
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, h, err := readiness(cl.client, n)
				if err == nil && code == http.StatusServiceUnavailable && h.Cluster != nil && !h.Cluster.Connected {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: %s's /ready with the engine killed: %d %+v %v, want 503 and not connected", round, n.name, code, h, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		// Knocks get 503, on a (still under load) and on b.
		for i, n := range []*clusterNode{a, b} {
			ip := fmt.Sprintf("10.%d.255.%d", 60+round, i+1)
			if code, body, err := knockRaw(cl.client, n, clusterKey, ip); err != nil || !isClusterDown(code, body) {
				t.Fatalf("round %d: knock on %s with the engine down: %d %s %v, want 503 %q", round, n.name, code, body, err, knockapi.MsgClusterDown)
			}
		}
		// Gates keep serving what they hold: a everything it answered
		// (its own store has each before the 200), b and c the grants
		// they had before the outage.
		close(stop)
		wg.Wait()
		client.CloseIdleConnections()
		if len(other) > 0 {
			t.Fatalf("round %d: knocks answered neither 200 nor 503 %q: %v", round, knockapi.MsgClusterDown, other[:min(len(other), 10)])
		}
		if f := waitAll([]*clusterNode{a}, acks, true); len(f) > 0 {
			t.Fatalf("round %d: a does not admit what it answered, with the engine down: %v", round, f[:min(len(f), 10)])
		}
		before := append([]string{earlier}, all...)
		if f := waitAll([]*clusterNode{b, c}, before, true); len(f) > 0 {
			t.Fatalf("round %d: b and c stopped admitting earlier grants with the engine down: %v", round, f[:min(len(f), 10)])
		}
		outageChecks += len(acks) + 2*len(before)

		// The engine restarts on its store: every 200 survived.
		restarted := time.Now()
		cl.engine.start()
		for _, n := range []*clusterNode{a, b, c} {
			n.waitReady(t)
		}
		backMax = max(backMax, time.Since(restarted))
		if f := waitAll([]*clusterNode{b, c}, acks, true); len(f) > 0 {
			t.Fatalf("round %d: %d of %d knocks answered 200 lost with the engine's kill -9: %v", round, len(f), len(acks), f[:min(len(f), 10)])
		}
		all = append(all, acks...)
		t.Logf("round %d: %d knocks answered 200, all admitted by b and c after the engine's restart", round, len(acks))
	}

	// A fresh node reads every grant from the restarted engine.
	d := cl.addNode()
	d.start(t, cl)
	d.waitReady(t)
	dReady := time.Since(d.started)
	if f := waitAll([]*clusterNode{d}, append([]string{earlier}, all...), true); len(f) > 0 {
		t.Fatalf("a fresh node does not admit %d of the %d knocks answered 200: %v", len(f), len(all), f[:min(len(f), 10)])
	}
	// And knocks work again, everywhere.
	knockMust(t, cl.client, b, "192.0.2.11", 600)
	held := cl.waitSameGrants(a, b, c, d)
	if _, ok := held["192.0.2.11"]; !ok {
		t.Fatal("a knock after the restarts did not reach every node")
	}
	// Knocks answered 503 whose record the engine had stored, its
	// acknowledgement lost in the kill, are held everywhere all the same.
	late := len(held) - len(all) - 2
	t.Logf("figure: cluster kill -9 of the engine: %d rounds, %d knocks answered 200, %d lost, %d answered 503 (when_down refuse) meanwhile (%d of them stored by the engine all the same, their acknowledgement lost in the kill: held by every node); %d gate checks during the outages all admitted; nodes ready again within %v of the engine's restart (slowest round), a fresh node ready with all %d grants %v after its start",
		rounds, len(all), 0, refused, late, outageChecks, backMax, len(held), dReady)
}

// knockMany knocks on n once for each of count addresses (10.100.0.1 on),
// 32 at a time, and returns them; every knock must be granted.
func knockMany(t *testing.T, n *clusterNode, count int) []string {
	t.Helper()
	client := loadClient()
	defer client.CloseIdleConnections()
	ips := make([]string, count)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.100.%d.%d", i/250, i%250+1)
	}
	work := make(chan string)
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ip := range work {
				if code, ans, err := knockAs(client, n.knockURL(), clusterKey, ip, 3600); err != nil || code != http.StatusOK || ans.WhitelistedEntry != ip {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d %+v %v", ip, code, ans, err))
					mu.Unlock()
				}
			}
		}()
	}
	for _, ip := range ips {
		work <- ip
	}
	close(work)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d knocks on %s not granted: %v", len(failures), count, n.name, failures[:min(len(failures), 10)])
	}
	return ips
}

// adminRevoke revokes entry through n's admin API.
func adminRevoke(c *http.Client, n *clusterNode, entry string) (int, string, error) {
	req, err := http.NewRequest(http.MethodDelete, n.adminURL()+"/knocker/grants/"+strings.ReplaceAll(entry, "/", "%2F"), nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := testutil.Do(c, req)
	return resp.Status, resp.Body, err
}

// TestClusterCatchUp: c stops cleanly; 10,000 grants are made through a and
// one of c's revoked; c starts again and catches up (a full snapshot),
// removing an entry added to its whitelist.json meanwhile. The figure is the time from c's process start to its /ready 200, and to its
// admin API listing every grant.
func TestClusterCatchUp(t *testing.T) {
	grants := 10000
	if raceEnabled {
		grants = 2000
	}
	cl := newCluster(t, nodeOptions{})
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	const revoked = "192.0.2.1"
	knockMust(t, cl.client, a, revoked, 3600)
	if f := waitAll([]*clusterNode{c}, []string{revoked}, true); len(f) > 0 {
		t.Fatal(f)
	}
	c.stop(t)
	// A grant the cluster never had, written into c's whitelist.json (the
	// Python Knocker's format) while it is stopped: c joined the cluster
	// before, so its catch-up removes what the bucket lacks.
	const stray = "192.0.2.77"
	wl := readWhitelist(t, c.whitelist)
	if _, ok := wl[revoked]; !ok || len(wl) != 1 {
		t.Fatalf("c's whitelist.json after a clean stop: %v, want %s alone", wl, revoked)
	}
	wl[stray] = time.Now().Unix() + 3600
	raw, err := json.Marshal(wl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.whitelist, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	ips := knockMany(t, a, grants)
	knocking := time.Since(began)
	if code, body, err := adminRevoke(cl.client, a, revoked); err != nil || code != http.StatusOK || body != `{"revoked":1}`+"\n" && body != `{"revoked":1}` {
		t.Fatalf("revoking %s through a's admin API: %d %q %v", revoked, code, body, err)
	}
	want := cl.waitSameGrants(a, b)
	if len(want) != grants {
		t.Fatalf("a and b hold %d grants, want %d", len(want), grants)
	}

	// c starts: /ready is polled from the process's start.
	config := writeConfig(t, c.dir, "Caddyfile", c.config(cl.engine.url(), cl.opts))
	c.started = time.Now()
	c.proc = startCaddy(t, cl.bin, c.home, config)
	var toReady time.Duration
	for deadline := c.started.Add(60 * time.Second); ; {
		select {
		case err := <-c.proc.done:
			c.proc.done <- err
			t.Fatalf("c exited: %v", err)
		default:
		}
		if code, _, err := readiness(cl.client, c); err == nil && code == http.StatusOK {
			toReady = time.Since(c.started)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("c not ready within 60s of its start")
		}
		time.Sleep(2 * time.Millisecond)
	}
	var toAll, listing time.Duration
	polls := 0
	for deadline := time.Now().Add(clusterWait); ; {
		t0 := time.Now()
		got, err := grantsOf(cl.client, c)
		listing = time.Since(t0)
		polls++
		if err == nil && maps.Equal(got, want) {
			toAll = time.Since(c.started)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c lists %d grants (%v), want the %d a and b hold", len(got), err, len(want))
		}
	}
	sample := []string{ips[0], ips[len(ips)-1]}
	for range 500 {
		sample = append(sample, ips[rand.IntN(len(ips))])
	}
	if f := waitAll([]*clusterNode{c}, sample, true); len(f) > 0 {
		t.Fatalf("c's gate after the catch-up: %v", f[:min(len(f), 10)])
	}
	if f := waitAll([]*clusterNode{c}, []string{revoked, stray}, false); len(f) > 0 {
		t.Fatalf("c still admits a grant revoked while it was stopped, or one the cluster never had: %v", f)
	}
	t.Logf("figure: cluster catch-up of %d grants made while c was stopped (knocked through a, 32 at a time, in %v: %.0f/s): c's /ready 200 %v after its process started, all %d listed by its admin API %v after the start (%v after /ready 200, %d listing(s), one takes %v); %d sampled at its gate admitted; the grant revoked meanwhile and the one the cluster never had denied",
		grants, knocking.Round(time.Millisecond), float64(grants)/knocking.Seconds(), toReady.Round(time.Millisecond), len(want),
		toAll.Round(time.Millisecond), (toAll - toReady).Round(time.Millisecond), polls, listing.Round(time.Millisecond), len(sample))
}

// sealRecord is a bucket value as the cluster package makes one (see
// cluster/record.go: the hex HMAC-SHA256, under secret, of the key, a zero
// byte and the record's JSON, then the JSON).
func sealRecord(secret, key string, rec map[string]any) []byte {
	body, err := json.Marshal(rec)
	if err != nil {
		panic(err)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(key))
	m.Write([]byte{0})
	m.Write(body)
	return append([]byte(hex.EncodeToString(m.Sum(nil))), body...)
}

// grepLines is the lines of text containing s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// postLoad loads a Caddyfile through n's admin API.
func postLoad(c *http.Client, n *clusterNode, caddyfile string) error {
	req, err := http.NewRequest(http.MethodPost, n.adminURL()+"/load", strings.NewReader(caddyfile))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := testutil.Do(c, req)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return fmt.Errorf("POST %s/load: %d %s", n.name, resp.Status, resp.Body)
	}
	return nil
}

// TestClusterGrantLifecycle: on one three-node cluster, /ready's cluster
// state, expiry on every node, a revocation through a's admin API, a ban
// for a failure window filled on a, forged records, and a reload of a that
// removes and re-adds the cluster block.
func TestClusterGrantLifecycle(t *testing.T) {
	cl := newCluster(t, nodeOptions{})
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	nodes := cl.nodes

	t.Run("ready", func(t *testing.T) {
		for _, n := range nodes {
			code, h, err := readiness(cl.client, n)
			if err != nil || code != http.StatusOK || h.Status != "ok" || h.Cluster == nil || h.Cluster.Node != n.name ||
				!h.Cluster.Connected || !h.Cluster.Synced || h.Cluster.Unpublished != 0 {
				t.Errorf("%s's /ready: %d %+v %v, want 200 with the cluster {node %s, connected, synced}", n.name, code, h, err, n.name)
			}
		}
	})

	t.Run("expiry", func(t *testing.T) {
		const ip = "192.0.2.20"
		ans := knockMust(t, cl.client, a, ip, 3)
		expires := time.Unix(ans.ExpiresAt, 0)
		for _, n := range nodes {
			if err := waitAdmits(cl.client, n, ip, true, expires); err != nil {
				t.Fatalf("before its expiry: %v", err)
			}
			st, err := statusAs(cl.client, n.knockURL(), ip)
			if err != nil {
				t.Fatal(err)
			}
			if st.Whitelisted && (st.ExpiresAt == nil || *st.ExpiresAt != ans.ExpiresAt) {
				t.Errorf("%s's /knock/status for %s: %+v, want the expiry a answered, %d", n.name, ip, st, ans.ExpiresAt)
			}
		}
		for _, n := range nodes {
			if err := waitAdmits(cl.client, n, ip, false, expires.Add(clusterWait)); err != nil {
				t.Fatalf("after its expiry: %v", err)
			}
			// Denied from its expiry on, not before (a second's rounding
			// allowed).
			if now := time.Now(); now.Before(expires.Add(-time.Second)) {
				t.Errorf("%s denies %s at %v, before its expiry %v", n.name, ip, now, expires)
			}
		}
	})

	t.Run("revocation", func(t *testing.T) {
		const ip = "192.0.2.21"
		knockMust(t, cl.client, a, ip, 600)
		if f := waitAll([]*clusterNode{b, c}, []string{ip}, true); len(f) > 0 {
			t.Fatal(f)
		}
		if code, body, err := adminRevoke(cl.client, a, ip); err != nil || code != http.StatusOK || strings.TrimSpace(body) != `{"revoked":1}` {
			t.Fatalf("DELETE /knocker/grants/%s on a: %d %q %v", ip, code, body, err)
		}
		if f := waitAll(nodes, []string{ip}, false); len(f) > 0 {
			t.Fatalf("a revocation through a's admin API: %v", f)
		}
	})

	t.Run("ban", func(t *testing.T) {
		const actor, marker = "192.0.2.30", "192.0.2.31"
		for i := range 3 {
			if code, _, err := knockAs(cl.client, a.knockURL(), "wrong-key-0123456789abcdef", actor, 0); err != nil || code != http.StatusUnauthorized {
				t.Fatalf("wrong key %d on a: %d %v, want 401", i+1, code, err)
			}
		}
		if code, _, err := knockAs(cl.client, a.knockURL(), clusterKey, actor, 0); err != nil || code != http.StatusTooManyRequests {
			t.Fatalf("a good key on a after 3 failures: %d %v, want 429", code, err)
		}
		// The ban is published in the background: once a has nothing left
		// to publish, a grant it makes comes after the ban in the bucket,
		// so a node admitting that grant has applied the ban.
		deadline := time.Now().Add(clusterWait)
		for {
			code, h, err := readiness(cl.client, a)
			if err == nil && code == http.StatusOK && h.Cluster.Unpublished == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a still has records to publish: %d %+v %v", code, h, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		knockMust(t, cl.client, a, marker, 600)
		if f := waitAll([]*clusterNode{b, c}, []string{marker}, true); len(f) > 0 {
			t.Fatal(f)
		}
		for _, n := range []*clusterNode{b, c} {
			code, body, err := knockRaw(cl.client, n, clusterKey, actor)
			if err != nil || code != http.StatusTooManyRequests {
				t.Errorf("a good key on %s from a client that filled its failure window on a: %d %s %v, want 429", n.name, code, body, err)
			}
		}
		if f := waitAll(nodes, []string{actor}, false); len(f) > 0 {
			t.Errorf("the banned client was granted somewhere: %v", f)
		}
	})

	t.Run("forged", func(t *testing.T) {
		nc, err := nats.Connect(cl.engine.url())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, clusterBucket)
		if err != nil {
			t.Fatal(err)
		}
		record := func(entry string) map[string]any {
			return map[string]any{"v": 1, "op": "grant", "entry": entry, "expires": time.Now().Unix() + 600,
				"key": "k1", "node": "mallory", "time": time.Now().UnixMilli()}
		}
		// Signed with another secret; the genuine record of 192.0.2.98
		// replayed under 192.0.2.97's key; then, as a control, that
		// genuine record (signed with the cluster's secret) itself.
		genuine := sealRecord(clusterSecret, "g.192-0-2-98=32", record("192.0.2.98/32"))
		for _, put := range []struct {
			key   string
			value []byte
		}{
			{"g.192-0-2-99=32", sealRecord("another-secret-0123456789abcdef-0123456789", "g.192-0-2-99=32", record("192.0.2.99/32"))},
			{"g.192-0-2-97=32", genuine},
			{"g.192-0-2-98=32", genuine},
		} {
			if _, err := kv.Put(ctx, put.key, put.value); err != nil {
				t.Fatal(err)
			}
		}
		// The bucket is applied in order: a node admitting the control has
		// decided the forged records before.
		if f := waitAll(nodes, []string{"192.0.2.98"}, true); len(f) > 0 {
			t.Fatalf("the control record (signed with the cluster's secret) was not applied: %v", f)
		}
		for _, n := range nodes {
			for _, ip := range []string{"192.0.2.99", "192.0.2.97"} {
				if ok, err := admits(cl.client, n, ip); err != nil || ok {
					t.Errorf("%s admits %s from a forged record: %v %v", n.name, ip, ok, err)
				}
			}
			// Both were delivered and rejected (the metric, on the admin
			// endpoint), not merely missed.
			code, body, err := getAs(cl.client, n.adminURL()+"/metrics", "127.0.0.1")
			if err != nil || code != http.StatusOK {
				t.Fatalf("%s's /metrics: %d %v", n.name, code, err)
			}
			if !slices.Contains(strings.Split(body, "\n"), "caddy_knocker_cluster_rejected_records_total 2") {
				t.Errorf("%s's metrics do not count the 2 forged records as rejected:\n%s", n.name, grepLines(body, "rejected"))
			}
		}
	})

	t.Run("reload", func(t *testing.T) {
		const held, revoked, never = "192.0.2.40", "192.0.2.41", "192.0.2.49"
		const alone, meanwhile = "192.0.2.42", "192.0.2.43"
		knockMust(t, cl.client, a, held, 3600)
		knockMust(t, cl.client, a, revoked, 3600)
		if f := waitAll(nodes, []string{held, revoked}, true); len(f) > 0 {
			t.Fatal(f)
		}
		// a's gate decides right through both reloads.
		var probes, wrong, connErrs atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		stopProbe := sync.OnceFunc(func() {
			close(stop)
			wg.Wait()
		})
		defer stopProbe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := loadClient()
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for ip, want := range map[string]bool{held: true, never: false} {
					got, err := admits(client, a, ip)
					probes.Add(1)
					switch {
					case err != nil:
						connErrs.Add(1)
					case got != want:
						wrong.Add(1)
					}
				}
			}
		}()

		// Without the cluster block: a serves on its own.
		if err := postLoad(cl.client, a, a.config(cl.engine.url(), nodeOptions{noCluster: true})); err != nil {
			t.Fatal(err)
		}
		if code, h, err := readiness(cl.client, a); err != nil || code != http.StatusOK || h.Cluster != nil {
			t.Fatalf("a's /ready without the cluster block: %d %+v %v, want 200 without a cluster object", code, h, err)
		}
		knockMust(t, cl.client, a, alone, 3600)
		knockMust(t, cl.client, b, meanwhile, 3600)
		if code, body, err := adminRevoke(cl.client, b, revoked); err != nil || code != http.StatusOK {
			t.Fatalf("revoking %s on b: %d %q %v", revoked, code, body, err)
		}
		if f := waitAll([]*clusterNode{c}, []string{meanwhile}, true); len(f) > 0 {
			t.Fatal(f)
		}
		if f := waitAll([]*clusterNode{c}, []string{revoked}, false); len(f) > 0 {
			t.Fatal(f)
		}
		for ip, want := range map[string]bool{meanwhile: false, revoked: true, alone: true} {
			if got, err := admits(cl.client, a, ip); err != nil || got != want {
				t.Errorf("a out of the cluster: %s admitted %v (%v), want %v", ip, got, err, want)
			}
		}

		// The cluster block back: a catches up, publishes what it granted
		// alone (it left the cluster, so it joins anew), and takes the
		// revocation made meanwhile.
		if err := postLoad(cl.client, a, a.config(cl.engine.url(), nodeOptions{})); err != nil {
			t.Fatal(err)
		}
		a.waitReady(t)
		have := cl.waitSameGrants(a, b, c)
		for ip, want := range map[string]bool{held: true, alone: true, meanwhile: true, revoked: false} {
			if _, got := have[ip]; got != want {
				t.Errorf("after a re-joined: %s held by every node %v, want %v (they hold %v)", ip, got, want, sortedKeys(have))
			}
		}
		if f := waitAll(nodes, []string{alone, meanwhile}, true); len(f) > 0 {
			t.Error(f)
		}
		stopProbe()
		if wrong.Load() > 0 {
			t.Errorf("a's gate decided %d of %d probes wrongly across the reloads", wrong.Load(), probes.Load())
		}
		t.Logf("reload: a's gate probed %d times across removing and re-adding the cluster block, %d wrong decisions, %d connection errors", probes.Load(), wrong.Load(), connErrs.Load())
	})
}

// bucketGrants reads the bucket directly: the entries of its live grant
// records (the keys' last values; tombstones and bans left out), entry ->
// expires.
func bucketGrants(t *testing.T, url string) map[string]int64 {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, clusterBucket)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	out := map[string]int64{}
	for e := range w.Updates() {
		if e == nil { // the initial values are all delivered
			return out
		}
		var rec struct {
			Op      string `json:"op"`
			Entry   string `json:"entry"`
			Expires int64  `json:"expires"`
		}
		if v := e.Value(); len(v) > 64 && json.Unmarshal(v[64:], &rec) == nil && rec.Op == "grant" && rec.Expires > time.Now().Unix() {
			out[strings.TrimSuffix(rec.Entry, "/32")] = rec.Expires
		}
	}
	t.Fatal("the bucket's watcher ended before its initial values")
	return nil
}

// TestClusterMaxEntries: max_entries 5 on every node, knocks on a and b in
// turn. A knock evicts on the node that answers it (the soonest-expiring
// grants) and the eviction is published; every node converges to the same
// set, the bucket's.
func TestClusterMaxEntries(t *testing.T) {
	const limit = 5
	cl := newCluster(t, nodeOptions{maxEntries: limit})
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	knock := func(i int) string {
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		knockMust(t, cl.client, []*clusterNode{a, b}[i%2], ip, 600+10*i) // later knocks expire later
		return ip
	}

	// One at a time, each seen everywhere before the next: the five latest
	// stay, on every node.
	var ips []string
	for i := range 8 {
		ips = append(ips, knock(i))
		have := cl.waitSameGrants(a, b, c)
		if _, ok := have[ips[i]]; !ok || len(have) > limit {
			t.Fatalf("after knock %d: every node holds %v, want at most %d with %s", i+1, sortedKeys(have), limit, ips[i])
		}
	}
	have := cl.waitSameGrants(a, b, c)
	if want := ips[len(ips)-limit:]; !slices.Equal(sortedKeys(have), sortedKeys(setOf(want))) {
		t.Fatalf("one knock at a time: every node holds %v, want the %d latest %v", sortedKeys(have), limit, want)
	}

	// In turn without waiting: the next knock may reach a node before the
	// previous one's grant. The nodes still converge, to the bucket's set.
	for i := 8; i < 16; i++ {
		ips = append(ips, knock(i))
	}
	var raced map[string]int64
	for deadline := time.Now().Add(clusterWait); ; {
		raced = cl.waitSameGrants(a, b, c)
		if maps.Equal(raced, bucketGrants(t, cl.engine.url())) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes hold %v, the bucket %v", sortedKeys(raced), sortedKeys(bucketGrants(t, cl.engine.url())))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A knock on a node that has seen everything brings it back to the
	// limit everywhere.
	ips = append(ips, knock(16))
	final := cl.waitSameGrants(a, b, c)
	if len(final) > limit {
		t.Errorf("after a knock on a node that had seen every grant, the nodes hold %d > %d: %v", len(final), limit, sortedKeys(final))
	}
	t.Logf("figure: cluster max_entries %d: 8 knocks one at a time left the 5 latest on all three nodes; 8 more in turn on a and b without waiting converged to %d identical entries on every node (the bucket's), and one more knock to %d",
		limit, len(raced), len(final))
}

func setOf(ips []string) map[string]int64 {
	out := make(map[string]int64, len(ips))
	for _, ip := range ips {
		out[ip] = 0
	}
	return out
}

// adminGrant grants entry for ttl seconds through n's admin API.
func adminGrant(c *http.Client, n *clusterNode, entry string, ttl int) error {
	req, err := http.NewRequest(http.MethodPost, n.adminURL()+"/knocker/grants", strings.NewReader(fmt.Sprintf(`{"entry": %q, "ttl": %d}`, entry, ttl)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testutil.Do(c, req)
	if err == nil && resp.Status != http.StatusOK {
		err = fmt.Errorf("POST %s/knocker/grants %s: %d %s", n.name, entry, resp.Status, resp.Body)
	}
	return err
}

// TestClusterEngineDataLoss: the engine loses its store (kill -9, its
// store removed, restarted empty). The nodes make the bucket again and,
// joining a new bucket, publish what they hold; from then on they follow
// the new bucket's revisions, which start again from 1: a revocation made
// there reaches every node, and a node resuming after the next engine
// restart resumes where it is in the new bucket.
func TestClusterEngineDataLoss(t *testing.T) {
	cl := newCluster(t, nodeOptions{})
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	nodes := cl.nodes
	const x, y, z = "192.0.2.60", "192.0.2.61", "192.0.2.62"
	// Many revisions of one key: the old bucket's revisions run far
	// beyond what the new one will reach in this test.
	for i := range 300 {
		if err := adminGrant(cl.client, a, x, 600+i); err != nil {
			t.Fatal(err)
		}
	}
	if f := waitAll(nodes, []string{x}, true); len(f) > 0 {
		t.Fatal(f)
	}
	cl.engine.kill()
	if err := os.RemoveAll(filepath.Join(cl.engine.dir, "jetstream")); err != nil {
		t.Fatal(err)
	}
	cl.engine.start()
	for _, n := range nodes {
		n.waitReady(t)
	}
	if have := cl.waitSameGrants(a, b, c); len(have) != 1 || have[x] == 0 {
		t.Fatalf("after the engine lost its store the nodes hold %v, want %s", have, x)
	}
	if got := bucketGrants(t, cl.engine.url()); len(got) != 1 || got[x] == 0 {
		t.Fatalf("the new bucket holds %v, want %s, which the nodes published again", got, x)
	}

	// A revocation in the new bucket.
	if code, body, err := adminRevoke(cl.client, a, x); err != nil || code != http.StatusOK {
		t.Fatalf("revoking %s: %d %q %v", x, code, body, err)
	}
	if f := waitAll(nodes, []string{x}, false); len(f) > 0 {
		t.Errorf("a revocation made in the new bucket: %v", f)
	}
	// A grant, an engine restart (no loss this time), another grant.
	knockMust(t, cl.client, a, y, 600)
	if f := waitAll(nodes, []string{y}, true); len(f) > 0 {
		t.Errorf("a grant made in the new bucket: %v", f)
	}
	cl.engine.kill()
	cl.engine.start()
	for _, n := range nodes {
		n.waitReady(t)
	}
	knockMust(t, cl.client, a, z, 600)
	if f := waitAll(nodes, []string{z}, true); len(f) > 0 {
		t.Errorf("a grant made after the nodes resumed following the new bucket: %v", f)
	}
	for _, n := range nodes {
		code, h, err := readiness(cl.client, n)
		if err != nil || code != http.StatusOK || h.Cluster.Revision >= 300 {
			t.Errorf("%s's /ready: %d %+v %v, want 200 at a revision of the new bucket (the old one reached 300)", n.name, code, h, err)
		}
	}
}

// TestClusterRevocationDuringOutageSurvivesRestart: a revocation through a's
// admin API while the engine is down is answered at once and published
// when the engine is back, even if a restarted meanwhile.
func TestClusterRevocationDuringOutageSurvivesRestart(t *testing.T) {
	cl := newCluster(t, nodeOptions{})
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	nodes := cl.nodes
	const x = "192.0.2.70"
	knockMust(t, cl.client, a, x, 3600)
	if f := waitAll(nodes, []string{x}, true); len(f) > 0 {
		t.Fatal(f)
	}
	cl.engine.kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, h, err := readiness(cl.client, a)
		if err == nil && code == http.StatusServiceUnavailable && h.Cluster != nil && !h.Cluster.Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a's /ready with the engine killed: %d %+v %v", code, h, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body, err := adminRevoke(cl.client, a, x); err != nil || code != http.StatusOK || strings.TrimSpace(body) != `{"revoked":1}` {
		t.Fatalf("revoking %s on a with the engine down: %d %q %v", x, code, body, err)
	}
	if code, h, err := readiness(cl.client, a); err != nil || h.Cluster == nil || h.Cluster.Unpublished != 1 {
		t.Fatalf("a's /ready after the revocation: %d %+v %v, want one record unpublished", code, h, err)
	}
	a.stop(t)
	a.start(t, cl)
	if ok, err := admits(cl.client, a, x); err != nil || ok {
		t.Fatalf("a admits %s, revoked, after its restart with the engine down: %v %v", x, ok, err)
	}
	cl.engine.start()
	for _, n := range nodes {
		n.waitReady(t)
	}
	if f := waitAll([]*clusterNode{a, b, c}, []string{x}, false); len(f) > 0 {
		t.Errorf("a revocation made while the engine was down, then a restart of the node that made it: %v", f)
	}
}
