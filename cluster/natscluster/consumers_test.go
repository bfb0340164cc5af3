package natscluster

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stop closes the connection before Follow's deferred DeleteConsumer runs,
// so a stopped replicator (every reload) leaves its consumer on the server
// until the 30 s inactivity threshold. (The client side leaks nothing.)
func TestStopDeletesItsConsumer(t *testing.T) {
	e := startEngine(t)
	warm := newNode(t, "warm", e.url())
	warm.waitSynced()
	for i := range 5 {
		n := newNode(t, fmt.Sprint("n", i), e.url())
		n.waitSynced()
		n.stop() // deletes its consumer before it returns
	}
	nc, err := nats.Connect(e.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), "KV_knocker")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range s.ConsumerNames(context.Background()).Name() {
		names = append(names, name)
	}
	if len(names) != 1 {
		t.Fatalf("%d consumers after 5 nodes stopped and one runs, want 1", len(names))
	}
}
