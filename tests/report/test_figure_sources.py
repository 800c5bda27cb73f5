"""Which runs and parameters the paper's figures and Table 8 use."""

from qbench.paper import cells_for_figure, load_tables
from qbench.report import figures


def test_fig2_draws_the_papers_temperatures():
    fig = figures.fig2_quant_function()
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["soft, T=1", "soft, T=11", "soft, T=121", "hard (Eq. 12)"]


def test_fig3_is_resnet18_only():
    assert [c.id for c in cells_for_figure("fig3")] == ["resnet18_fp"]


def test_table8_states_its_network():
    table = load_tables()["table8"]
    assert table["model"] == "alexnet_bn" and "AlexNet-BN" in table["title"]
