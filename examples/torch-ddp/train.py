"""Stock PyTorch DistributedDataParallel training of MNIST.

Nothing in this script knows about Loom: it uses torch's env:// rendezvous
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and LOCAL_RANK, which Loom
gives every rank, exactly as torchrun or Slurm+srun setups do. It
checkpoints to $LOOM_CHECKPOINT_DIR (or ./checkpoint) and resumes from it.

Loom's end-to-end tests run it on CPU with the gloo backend (Debian's
PyTorch, 2 nodes x 2 ranks: test/steps); the NCCL path on GPUs is untested
on hardware: Loom's build machines have no GPU. See docs/training.md.
"""

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from torchvision import datasets, transforms


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64, help="per rank")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--data", default=os.environ.get("MNIST_ROOT", "./data"))
    p.add_argument("--backend", default=None, help="nccl or gloo (default: nccl with CUDA, else gloo)")
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many steps (0: whole epoch)")
    p.add_argument("--log-every", type=int, default=100, help="steps between loss lines")
    p.add_argument("--workers", type=int, default=2, help="data loader processes per rank")
    args = p.parse_args()

    use_cuda = torch.cuda.is_available() and args.backend != "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        # Loom sets CUDA_VISIBLE_DEVICES to this rank's GPUs (by UUID):
        # with one GPU per task it is device 0.
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    backend = args.backend or ("nccl" if use_cuda else "gloo")
    dist.init_process_group(backend, init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda") if use_cuda else torch.device("cpu")

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    # Download on one rank per node would need a barrier; on a cluster the
    # data are usually staged already, so no rank downloads.
    train = datasets.MNIST(args.data, train=True, download=False, transform=tf)
    test = datasets.MNIST(args.data, train=False, download=False, transform=tf)
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=1)
    loader = DataLoader(train, batch_size=args.batch, sampler=sampler, num_workers=args.workers)

    model = DDP(Net().to(device), device_ids=[device.index] if use_cuda else None)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    ckpt_dir = os.environ.get("LOOM_CHECKPOINT_DIR", "./checkpoint")
    ckpt = os.path.join(ckpt_dir, "ddp.pt")
    start_epoch = 0
    if os.path.exists(ckpt):
        state = torch.load(ckpt, map_location=device)
        model.module.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start_epoch = state["epoch"]
        if rank == 0:
            print(f"resumed from checkpoint epoch {start_epoch}", flush=True)

    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        for step, (x, y) in enumerate(loader):
            if args.max_steps and step >= args.max_steps:
                break
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()  # DDP all-reduces the gradients here
            opt.step()
            if rank == 0 and step % args.log_every == 0:
                print(f"epoch={epoch} step={step} loss={loss.item():.4f}", flush=True)
        if rank == 0:
            os.makedirs(ckpt_dir, exist_ok=True)
            tmp = ckpt + ".tmp"
            torch.save({"model": model.module.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1}, tmp)
            os.replace(tmp, ckpt)  # atomic: a requeued gang never reads half a file
        dist.barrier()

    if rank == 0:
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in DataLoader(test, batch_size=1000):
                correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
        acc = correct / len(test)
        print(f"test_accuracy={acc:.4f}", flush=True)
        result_dir = os.environ.get("LOOM_RESULT_DIR")
        if result_dir:
            os.makedirs(result_dir, exist_ok=True)
            torch.save(model.module.state_dict(), os.path.join(result_dir, "model.pt"))
            with open(os.path.join(result_dir, "metrics.json"), "w") as f:
                f.write('{"test_accuracy": %.4f}\n' % acc)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
