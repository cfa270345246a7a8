"""Small models as research code builds them: the pieces passed as partials."""
from functools import partial

from seqkit.layers import GRU, LSTM, RNN
from seqkit.models import attention as scorers
from seqkit.models.seq2seq import (CopyGenerator, Coverage, Decoder, Generator,
                                   InputFedDecoder, Seq2Seq)

LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


def layer(kind: str = "lstm", hidden_size: int = 8, **options) -> partial:
    """A model's recurrent layer as its config gives it: a partial of seqkit's layer."""
    return partial(LAYERS[kind], hidden_size=hidden_size, batch_first=True, **options)


def seq2seq(src_vocab_size: int, tgt_vocab_size: int, embed_dim: int = 8,
            hidden_size: int = 10, cell: str = "lstm", attention: str = "general",
            input_feed: bool = True, coverage: bool = False, copy: bool = False,
            num_layers: int = 1, dropout: float = 0.3, options: dict | None = None,
            **kwargs) -> Seq2Seq:
    """The shipped Seq2Seq's shape: a BiRNN of hidden_size / 2 per direction, a decoder of
    hidden_size."""
    options = {"num_layers": num_layers, "dropout": dropout, **(options or {})}
    decoder = partial(InputFedDecoder if input_feed else Decoder,
                      rnn=layer(cell, hidden_size, **options),
                      attention=getattr(scorers, f"{attention.capitalize()}Attention"),
                      coverage=Coverage if coverage else None)
    return Seq2Seq(src_vocab_size, tgt_vocab_size,
                   encoder=layer(cell, hidden_size // 2, bidirectional=True, **options),
                   decoder=decoder, generator=CopyGenerator if copy else Generator,
                   embed_dim=embed_dim, dropout=dropout, **kwargs)
