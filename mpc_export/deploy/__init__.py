"""Deployment on three hosts: certificates (certs) and one bundle per player (bundle).

``certs.make_certificates(hosts, out)`` writes a fresh root CA and Player1..3 certificates (CN P1..P3,
what FANNG-MPC compares with NetworkData.txt); ``bundle.write_bundles(build, out, hosts, certs)`` checks
the build as ``mpc-export run`` does and writes ``out/player-<p>/`` for p = 0, 1, 2; ``bundle.check_bundle``
re-hashes one against its FILES.sha256.

What each player's bundle holds:

| in player-<p>/                                     | player 0 (model owner, input) | players 1 and 2            |
| -------------------------------------------------- | ----------------------------- | -------------------------- |
| Programs/<name>/<name>.mpc, io_answers.txt         | yes                           | yes                        |
| Data/<Name>Data/all_parameters/ (weights, BN, bias) | yes                           | only with --weights public |
| Data/<Name>Data/all_parameters/sparsity/           | yes (--sparsity public)       | yes (--sparsity public)    |
| Data/<Name>Data/Inputs/ (the image)                | yes                           | never                      |
| <Name>Data/Outputs/, manifest.json                 | no                            | no                         |
| NetworkData.txt, Cert-Store/RootCA.crt, Player1-3.crt | yes                        | yes                        |
| Cert-Store/Player<p+1>.key (mode 0600)             | its own                       | its own                    |
| run-player.sh, FILES.sha256                        | yes                           | yes                        |

Nobody receives RootCA.key (it stays with whoever made the certificates) or another player's key.
"""
