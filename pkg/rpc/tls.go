package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// TLSConfig is mutual TLS for the gRPC traffic between components: each
// process presents one certificate, as a server and as a client, and
// trusts the certificate authority that signs every component's. A server
// with it refuses clients without such a certificate. The certificate and
// key are read again when they change on disk; the CA at start.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
	// ServerName is the name clients check in servers' certificates; empty:
	// the host they dial (the address in the ring).
	ServerName string `yaml:"server_name"`
}

// RegisterFlags registers the flags under internal-grpc.tls-*.
func (c *TLSConfig) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.CertFile, "internal-grpc.tls-cert-file", "", "PEM certificate this process presents on gRPC between components, as server and as client (mutual TLS). With -internal-grpc.tls-key-file and -internal-grpc.tls-ca-file; all three or none.")
	f.StringVar(&c.KeyFile, "internal-grpc.tls-key-file", "", "PEM private key of -internal-grpc.tls-cert-file.")
	f.StringVar(&c.CAFile, "internal-grpc.tls-ca-file", "", "PEM certificate authority that signs every component's certificate: servers refuse clients without one, clients servers.")
	f.StringVar(&c.ServerName, "internal-grpc.tls-server-name", "", "Name clients check in servers' certificates; empty: the address they dial, which must then be in the certificate.")
}

// Enabled reports whether gRPC between components uses TLS.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" }

// Validate checks that the files are all given and load.
func (c TLSConfig) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.CertFile == "" || c.KeyFile == "" || c.CAFile == "" {
		return errors.New("-internal-grpc.tls-cert-file, -internal-grpc.tls-key-file and -internal-grpc.tls-ca-file go together: set all three or none")
	}
	_, err := c.load()
	return err
}

type tlsFiles struct {
	cert *keyPair
	cas  *x509.CertPool
}

func (c TLSConfig) load() (*tlsFiles, error) {
	cert := &keyPair{certFile: c.CertFile, keyFile: c.KeyFile}
	if _, err := cert.get(); err != nil {
		return nil, fmt.Errorf("-internal-grpc.tls-cert-file and -internal-grpc.tls-key-file: %w", err)
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("-internal-grpc.tls-ca-file: %w", err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-internal-grpc.tls-ca-file %s: no PEM certificate in it", c.CAFile)
	}
	return &tlsFiles{cert: cert, cas: cas}, nil
}

// keyPair is a certificate and its key, read again when either file
// changes: a certificate renewed on disk (by cert-manager, a Vault agent)
// serves the next connections without a restart. A renewal that does not
// load (the key written after the certificate) keeps the last good pair.
type keyPair struct {
	certFile, keyFile string

	mu       sync.Mutex
	cert     *tls.Certificate
	modified [2]time.Time
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var modified [2]time.Time
	for i, f := range []string{k.certFile, k.keyFile} {
		if st, err := os.Stat(f); err == nil {
			modified[i] = st.ModTime()
		}
	}
	if k.cert != nil && modified == k.modified {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, err
	}
	k.cert, k.modified = &cert, modified
	return k.cert, nil
}

// Credentials are a gRPC server's and a gRPC client's, both nil when TLS
// is off. The server presents the certificate and requires clients' and
// checks them against the CA; the client presents the same certificate
// and checks servers'. Both read the files once, and again when they
// change.
func (c TLSConfig) Credentials() (server, client credentials.TransportCredentials, err error) {
	if !c.Enabled() {
		return nil, nil, nil
	}
	f, err := c.load()
	if err != nil {
		return nil, nil, err
	}
	server = credentials.NewTLS(&tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return f.cert.get() },
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      f.cas,
	})
	client = credentials.NewTLS(&tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return f.cert.get() },
		RootCAs:              f.cas,
		ServerName:           c.ServerName,
	})
	return server, client, nil
}
