import pytest
import torch

from advdefense.models import CheckpointError, CifarResNet, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("depth,params", [(20, 269_722), (32, 464_154), (8, 75_290)])
def test_resnet_parameter_count_matches_he_et_al(depth, params):
    model = CifarResNet(depth)
    assert sum(p.numel() for p in model.parameters()) == params
    # convolutions are bias-free; only the final linear layer has a bias
    biases = [n for n, _ in model.named_parameters() if n.endswith(".bias") and "bn" not in n]
    assert biases == ["fc.bias"]


def test_resnet20_structure_and_output_shape():
    model = CifarResNet(20).eval()
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [3, 3, 3]
    assert [s[0].conv1.out_channels for s in (model.layer1, model.layer2, model.layer3)] == [16, 32, 64]
    out = model(torch.rand(5, 3, 32, 32))
    assert out.shape == (5, 10)
    assert torch.isfinite(out).all()


def test_normalisation_is_inside_the_model():
    model = CifarResNet(8)
    x = torch.full((1, 3, 32, 32), 0.5)
    normed = model.normalize(x)
    expected = (0.5 - torch.tensor([0.4914, 0.4822, 0.4465])) / torch.tensor([0.2470, 0.2435, 0.2616])
    assert torch.allclose(normed[0, :, 0, 0], expected, atol=1e-6)
    assert "normalize.mean" in model.state_dict()


@pytest.mark.parametrize("depth", [7, 10, 21, 0])
def test_depth_not_6n_plus_2_is_refused(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = CifarResNet(8).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, "classifier", model, {"test_accuracy": 0.5})
    raw = torch.load(path, weights_only=True)  # must not need pickle of arbitrary objects
    assert raw["arch"] == {"name": "resnet", "depth": 8, "num_classes": 10, "width": 16}
    loaded, meta = load_checkpoint(path, "classifier")
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    assert meta["test_accuracy"] == 0.5


def test_checkpoint_of_wrong_architecture_is_refused(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, "classifier", CifarResNet(8))
    with pytest.raises(CheckpointError, match=r"m\.pt.*depth: file has 8, config wants 20"):
        load_checkpoint(path, "classifier", {"depth": 20})
    with pytest.raises(CheckpointError, match="expected a 'autoencoder' model"):
        load_checkpoint(path, "autoencoder")
    # weights that do not fit the declared architecture
    payload = torch.load(path, weights_only=True)
    payload["arch"]["width"] = 32
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path, "classifier")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(path, "classifier")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt", "classifier")


def test_folded_batchnorm_is_the_same_function():
    from advdefense.models.resnet import fold_batchnorm

    torch.manual_seed(0)
    model = CifarResNet(20)
    model.train()
    with torch.no_grad():  # give the batch norms non-trivial running statistics
        for _ in range(3):
            model(torch.rand(64, 3, 32, 32))
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(16, 3, 32, 32, requires_grad=True)
    out, out_f = model(x), folded(x)
    assert torch.allclose(out, out_f, atol=1e-4, rtol=1e-4)
    g = torch.autograd.grad(out[:, 3].sum(), x)[0]
    g_f = torch.autograd.grad(folded(x)[:, 3].sum(), x)[0]
    assert torch.allclose(g, g_f, atol=1e-5, rtol=1e-3)
    assert all(p.requires_grad for p in model.parameters())  # the original is untouched


def _reference_forward(model, x):
    """The ResNet written out of place (no in-place ReLU or residual add), as a reference."""
    import torch.nn.functional as F

    def block(b, h):
        out = F.relu(b.bn1(b.conv1(h)))
        return F.relu(b.bn2(b.conv2(out)) + b.shortcut(h))

    h = F.relu(model.bn1(model.conv1(model.normalize(x))))
    for stage in (model.layer1, model.layer2, model.layer3):
        for b in stage:
            h = block(b, h)
    return model.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


# relative error of each parameter's gradient against the float64 out-of-place formulation: float32 rounding,
# and for channels-last on one CPU thread about 2e-3 (oneDNN's single-threaded channels-last convolution
# backward; 1.5e-5 on two threads, where it runs another kernel)
GRADIENT_TOLERANCE = {torch.contiguous_format: 1e-4, torch.channels_last: 1e-2}


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_in_place_training_step_gives_the_reference_gradients(layout):
    """In-place ReLU / residual add and channels-last change no value: same loss, same parameter
    gradients and same batch-norm statistics updates as the out-of-place formulation (run in float64), up to
    float32 rounding (`GRADIENT_TOLERANCE`)."""
    import copy

    import torch.nn.functional as F

    torch.manual_seed(0)
    model = CifarResNet(8).train()
    reference = copy.deepcopy(model).double()
    model = model.to(memory_format=layout)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    loss = F.cross_entropy(model(x), y)
    loss_ref = F.cross_entropy(_reference_forward(reference, x.double()), y)
    loss.backward()
    loss_ref.backward()
    assert loss.item() == pytest.approx(loss_ref.item(), abs=1e-5)
    for (name, p), p_ref in zip(model.named_parameters(), reference.parameters()):
        error = ((p.grad.double() - p_ref.grad).norm() / p_ref.grad.norm()).item()
        assert error <= GRADIENT_TOLERANCE[layout], (name, error)
    for (name, b), b_ref in zip(model.named_buffers(), reference.buffers()):
        assert torch.allclose(b.double(), b_ref.double(), atol=1e-6), name
