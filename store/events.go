package store

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// Kind says what happened to an entry.
type Kind uint8

const (
	Added    Kind = iota + 1 // new entry
	Extended                 // existing entry got a new expiry (later or earlier: the last knock wins)
	Removed                  // revoked, or evicted to respect MaxEntries (Event.Evicted)
	Expired                  // removed by the sweeper because its expiry passed
)

func (k Kind) String() string {
	switch k {
	case Added:
		return "added"
	case Extended:
		return "extended"
	case Removed:
		return "removed"
	case Expired:
		return "expired"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Event describes one committed change.
type Event struct {
	Kind Kind
	// Entry is the affected entry. For Added and Extended it carries the new
	// expiry; for Removed and Expired the expiry it had.
	Entry Entry
	// Previous is the old expiry for Extended, else 0.
	Previous int64
	// Evicted marks a Removed entry that a grant evicted to make room
	// (MaxEntries or the owner's MaxOwned) rather than a revocation.
	Evicted bool
	// Remote marks a change applied from elsewhere (a cluster peer's
	// grant, revocation or eviction, see Apply) rather than made here.
	Remote bool
}

// subscribers is a copy-on-write list, so that delivering an event takes no
// lock and cannot deadlock with Subscribe or cancel.
type subscribers struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*subscriber]
}

type subscriber struct{ fn func(Event) }

func (s *subscribers) add(fn func(Event)) (cancel func()) {
	sub := &subscriber{fn}
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*subscriber
	if p := s.list.Load(); p != nil {
		list = slices.Clone(*p)
	}
	list = append(list, sub)
	s.list.Store(&list)
	var once sync.Once
	return func() { once.Do(func() { s.remove(sub) }) }
}

func (s *subscribers) remove(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.list.Load()
	if p == nil {
		return
	}
	list := slices.DeleteFunc(slices.Clone(*p), func(x *subscriber) bool { return x == sub })
	s.list.Store(&list)
}

// emit calls every subscriber with ev. A panicking subscriber is logged and
// does not take the committer (and the process) down.
func (s *subscribers) emit(ev Event, log *zap.Logger) {
	p := s.list.Load()
	if p == nil {
		return
	}
	for _, sub := range *p {
		func() {
			defer func() {
				if r := recover(); r != nil {
					log.Error("whitelist event subscriber panicked", zap.Any("panic", r), zap.Stringer("event", ev.Kind))
				}
			}()
			sub.fn(ev)
		}()
	}
}
