package store

// expiryHeap is a binary min-heap of entries by expiry, owned by the committer.
// It uses lazy deletion: revokes and re-grants do not search the heap; they
// leave stale items behind, which are recognised when they reach the top
// because the index no longer holds that key with that expiry. When stale
// items outnumber live ones the heap is rebuilt from the index, so its size
// stays O(entries) and every operation O(log n).
type expiryHeap []keyExp

// keyExp is an entry in the compact form the writer side works with.
type keyExp struct {
	key entryKey
	exp int64
}

func (h expiryHeap) less(i, j int) bool { return h[i].exp < h[j].exp }

func (h *expiryHeap) push(it keyExp) {
	*h = append(*h, it)
	h.up(len(*h) - 1)
}

func (h *expiryHeap) pop() keyExp {
	old := *h
	n := len(old) - 1
	top := old[0]
	old[0] = old[n]
	*h = old[:n]
	h.down(0)
	return top
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (h expiryHeap) down(i int) {
	n := len(h)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if r := c + 1; r < n && h.less(r, c) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// init establishes the heap order over arbitrary contents in O(n).
func (h expiryHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// popLive removes stale items from the top and then pops the soonest-expiring
// live one. current reports a key's expiry as the caller currently sees it.
func (h *expiryHeap) popLive(current func(entryKey) (int64, bool)) (keyExp, bool) {
	for len(*h) > 0 {
		it := h.pop()
		if exp, ok := current(it.key); ok && exp == it.exp {
			return it, true
		}
	}
	return keyExp{}, false
}

// peekLive drops stale items from the top and returns the live minimum
// without removing it.
func (h *expiryHeap) peekLive(current func(entryKey) (int64, bool)) (keyExp, bool) {
	for len(*h) > 0 {
		it := (*h)[0]
		if exp, ok := current(it.key); ok && exp == it.exp {
			return it, true
		}
		h.pop()
	}
	return keyExp{}, false
}
