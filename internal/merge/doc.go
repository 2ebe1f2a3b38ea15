// Package merge joins the paths of several nodes' traces (--scope node
// recordings) into one path per packet: a node's half ending in a tunnel's
// encap is matched with another node's half starting at its decap, each
// node's clock offset is estimated from the matched packets, and the halves
// are put on the first node's clock. It sits between stitch and render.
package merge
