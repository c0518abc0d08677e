// Command kube-sandbox runs a real kube-apiserver with an embedded etcd in one
// process, for the collection's local sandbox. It is a test fixture only.
//
// Usage: kube-sandbox --etcd-dir DIR --etcd-port N -- <kube-apiserver flags>
//
// etcd listens on loopback only; the apiserver flags are passed through
// unchanged, so the Python supervisor owns the whole configuration.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	fs := flag.NewFlagSet("kube-sandbox", flag.ExitOnError)
	etcdDir := fs.String("etcd-dir", "", "etcd data directory (required)")
	etcdPort := fs.Int("etcd-port", 0, "etcd client port on 127.0.0.1 (required)")
	etcdPeerPort := fs.Int("etcd-peer-port", 0, "etcd peer port on 127.0.0.1 (required)")
	_ = fs.Parse(os.Args[1:])
	if *etcdDir == "" || *etcdPort == 0 || *etcdPeerPort == 0 {
		fmt.Fprintln(os.Stderr, "kube-sandbox: --etcd-dir, --etcd-port and --etcd-peer-port are required")
		os.Exit(2)
	}

	etcd, err := startEtcd(*etcdDir, *etcdPort, *etcdPeerPort)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-sandbox: etcd: %v\n", err)
		os.Exit(1)
	}

	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(fs.Args())
	os.Args = append([]string{"kube-apiserver"}, fs.Args()...)
	code := cli.Run(cmd)
	// The apiserver handles SIGTERM itself and returns from Run; close etcd
	// afterwards so its data directory is left consistent. (A defer would not
	// run: os.Exit skips deferred calls.)
	etcd.Close()
	os.Exit(code)
}

func startEtcd(dir string, port, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "sandbox"
	cfg.Dir = dir
	cfg.LogLevel = "error"
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peer.String())
	// The sandbox is disposable: trade durability for speed.
	cfg.UnsafeNoFsync = true
	// etcd's default 1.5 MiB request limit is below Prow's ProwJob CRD (1.6 MB as JSON,
	// sigs.k8s.io/prow config/prow/cluster/prowjob-crd), which managed control planes store.
	cfg.MaxRequestBytes = 8 * 1024 * 1024

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("not ready after 60s")
	case sig := <-signalChan():
		e.Close()
		return nil, fmt.Errorf("interrupted by %v", sig)
	}
}

func signalChan() <-chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	return c
}
