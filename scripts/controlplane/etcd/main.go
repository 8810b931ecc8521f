// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 by scripts/kube-controlplane.
//
// Upstream's etcd main package sits in the repository root module (go.etcd.io/etcd/v3), whose go.mod replaces
// every etcd module with a relative path, so it cannot be built as a dependency. etcdmain.Main is what that
// main package calls; this file is the same three lines in a module whose requirements are the published ones.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
