package knockapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

// KnockResponse is the Python Knocker's success body.
type KnockResponse struct {
	WhitelistedEntry string `json:"whitelisted_entry"`
	ExpiresAt        int64  `json:"expires_at"`
	ExpiresInSeconds int64  `json:"expires_in_seconds"`
}

// ReadBody reads at most MaxBody bytes: 413 beyond, whether the
// length is declared or streamed.
func ReadBody(r *http.Request) ([]byte, *Error) {
	if r.ContentLength > MaxBody {
		return nil, NewError(http.StatusRequestEntityTooLarge, MsgBodyTooLarge)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, NewError(http.StatusBadRequest, MsgMalformed)
	}
	if len(body) > MaxBody {
		return nil, NewError(http.StatusRequestEntityTooLarge, MsgBodyTooLarge)
	}
	return body, nil
}

// StatusResponse tells a client how the server sees it. It reveals no more
// than /verify does, so it needs no key; clients use it to learn their public
// address without a third-party service and to schedule re-knocks.
type StatusResponse struct {
	IP               string  `json:"ip"`
	Whitelisted      bool    `json:"whitelisted"`
	Entry            *string `json:"entry"`              // the grant covering ip, if any
	ExpiresAt        *int64  `json:"expires_at"`         // null when not whitelisted
	ExpiresInSeconds *int64  `json:"expires_in_seconds"` // null when not whitelisted
	// Scopes the grant is limited to; absent for a full-access grant (and
	// when not whitelisted), so the original clients see the original body.
	Scopes []string `json:"scopes,omitempty"`
}

// HealthResponse is the body of /health and /ready.
type HealthResponse struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// Cluster is the cluster state, in cluster mode (/ready only).
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// ClusterStatus is a node's cluster state, as /ready shows it.
type ClusterStatus struct {
	Node      string `json:"node"`
	Connected bool   `json:"connected"`
	// Synced: the node has caught up with the shared whitelist once.
	Synced bool `json:"synced"`
	// Revision is the last bucket revision applied here; Lag is how many
	// changes the engine holds that this node has not received yet.
	Revision uint64 `json:"revision"`
	Lag      uint64 `json:"lag"`
	// Unpublished counts this node's records waiting for the engine.
	Unpublished int `json:"unpublished"`
}

// PortalResponse is the body of /knock/portal: the hosts the web app may
// send a browser back to after a knock (normalised return_hosts).
type PortalResponse struct {
	ReturnHosts []string `json:"return_hosts"`
}

// WriteError answers with e as the JSON body {"error": "..."}.
func WriteError(w http.ResponseWriter, e *Error) {
	WriteJSON(w, e.Status, struct {
		Error string `json:"error"`
	}{e.Message})
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only our own fixed types are marshalled
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
