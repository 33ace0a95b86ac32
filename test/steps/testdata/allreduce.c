/* allreduce: every rank contributes rank+1; every rank prints the sum,
 * which for N ranks is N*(N+1)/2. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int rank, size, mine, sum = 0, len;
    char host[MPI_MAX_PROCESSOR_NAME];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);
    mine = rank + 1;
    MPI_Allreduce(&mine, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("allreduce rank %d of %d node %s sum %d\n", rank, size, getenv("SLURMD_NODENAME") ? getenv("SLURMD_NODENAME") : host, sum);
    MPI_Finalize();
    return 0;
}
