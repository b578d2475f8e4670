"""Rules, encodings and splits."""
from twoclocks.data.encodings import (ENCODINGS, BinaryEncoding, Encoding, OneHotEncoding,
                                      ScalarEncoding, make_encoding)
from twoclocks.data.rules import RULES, GroupParity, Rule, make_rule
from twoclocks.data.count_rules import ExactK, GlobalK, RowK, RowVariableK  # registers in RULES
from twoclocks.data.latin import LatinSquare, RowLatin, Sudoku  # registers in RULES
from twoclocks.data.splits import make_splits, unique_valid

__all__ = ["Rule", "GroupParity", "ExactK", "RowK", "RowVariableK", "GlobalK", "LatinSquare",
           "RowLatin", "Sudoku", "Encoding", "BinaryEncoding", "ScalarEncoding", "OneHotEncoding",
           "RULES", "ENCODINGS", "make_rule", "make_encoding", "make_splits", "unique_valid"]
