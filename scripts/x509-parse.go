// Parses certificates and CRLs with Go's crypto/x509, which refuses what many X.509 stacks built
// on it refuse (OIDs with arcs over 31 bits, for one). Each argument is a PEM or DER file; the
// exit status is 1 when any of them does not parse, and the reason is printed per file.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

func parse(der []byte, kind string) error {
	switch kind {
	case "CERTIFICATE":
		_, err := x509.ParseCertificate(der)
		return err
	case "X509 CRL":
		_, err := x509.ParseRevocationList(der)
		return err
	}
	return fmt.Errorf("cannot parse a %s", kind)
}

func main() {
	failed := false
	for _, name := range os.Args[1:] {
		data, err := os.ReadFile(name)
		if err != nil {
			fmt.Printf("%s: %v\n", name, err)
			failed = true
			continue
		}
		blocks := []*pem.Block{}
		for rest := data; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			blocks = append(blocks, block)
		}
		if len(blocks) == 0 {
			// DER: a certificate unless it only parses as a CRL.
			if parse(data, "CERTIFICATE") == nil {
				blocks = append(blocks, &pem.Block{Type: "CERTIFICATE", Bytes: data})
			} else {
				blocks = append(blocks, &pem.Block{Type: "X509 CRL", Bytes: data})
			}
		}
		for _, block := range blocks {
			if err := parse(block.Bytes, block.Type); err != nil {
				fmt.Printf("%s: %s: %v\n", name, block.Type, err)
				failed = true
			} else {
				fmt.Printf("%s: %s: ok\n", name, block.Type)
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}
