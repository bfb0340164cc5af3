package store

import (
	"fmt"
	"net/netip"
)

// Change is one change for Apply: a grant of the entry of Prefix and
// Scopes until Expires, or, with Expires 0, the removal of that entry.
type Change struct {
	Prefix  netip.Prefix
	Scopes  []string
	Expires int64
	// Options are a grant's, as for GrantWith (Scopes above wins).
	Options GrantOptions
	// Remote marks a change replicated from elsewhere: its events say so
	// (Event.Remote), a grant is not bounded by MaxEntries or MaxOwned
	// (the node that made it applied them), keeps Created and Renewed,
	// and a grant the store already holds with that expiry and owner is
	// no change at all.
	Remote           bool
	Created, Renewed int64
	// Evicted marks a removal as an eviction made elsewhere (Event.Evicted).
	Evicted bool

	// Results, set by Apply.
	Result  GrantResult
	Removed []Entry // for a removal: the entry, if it was present
	Err     error
}

// Apply makes changes in order, durably, as if each were a GrantWith or a
// removal made one after another, but hands them to the committer together,
// so that they share writes and fsyncs. Each change gets its own result; a
// change that fails leaves the others alone. It returns ErrClosed, with
// nothing applied, after Close.
func (s *Store) Apply(changes []Change) error {
	reqs := make([]*request, len(changes))
	for i := range changes {
		c := &changes[i]
		r, err := s.changeRequest(c)
		if err != nil {
			c.Err = err
			continue
		}
		r.done = make(chan struct{})
		reqs[i] = r
	}
	s.sendMu.RLock()
	if s.closed.Load() {
		s.sendMu.RUnlock()
		return ErrClosed
	}
	for _, r := range reqs {
		if r != nil {
			s.reqs <- r
		}
	}
	s.sendMu.RUnlock()
	for i, r := range reqs {
		if r == nil {
			continue
		}
		<-r.done
		c := &changes[i]
		c.Result, c.Removed, c.Err = r.result, r.revoked, r.err
	}
	return nil
}

// changeRequest checks c as GrantWith or Revoke would and makes its request.
func (s *Store) changeRequest(c *Change) (*request, error) {
	if err := CanonicalPrefix(c.Prefix); err != nil {
		return nil, err
	}
	scopes, err := CheckScopes(c.Scopes)
	if err != nil {
		return nil, err
	}
	if c.Expires == 0 {
		return &request{kind: reqRevoke, prefix: c.Prefix, key: keyOf(c.Prefix), scopes: scopes, oneSet: true, remote: c.Remote, evicted: c.Evicted}, nil
	}
	o := c.Options
	if now := s.now().Unix(); c.Expires <= now || c.Expires < 0 {
		return nil, fmt.Errorf("%w: expiry %d is not in the future (now %d)", ErrInvalid, c.Expires, now)
	}
	if o.MaxEntries < 0 || o.MaxOwned < 0 {
		return nil, fmt.Errorf("%w: negative MaxEntries %d or MaxOwned %d", ErrInvalid, o.MaxEntries, o.MaxOwned)
	}
	if err := CheckOwnerName(o.Owner); err != nil {
		return nil, err
	}
	return &request{kind: reqGrant, prefix: c.Prefix, key: keyOf(c.Prefix), expires: c.Expires, limit: o.MaxEntries,
		owner: o.Owner, client: o.Client, maxOwned: o.MaxOwned, mayEvict: o.MayEvict, scopes: scopes,
		remote: c.Remote, created: c.Created, renewed: c.Renewed}, nil
}
