"""`python -m mnist_rnn` is the same program as the `mnist-rnn` console script."""

from mnist_rnn.cli import main

main()
