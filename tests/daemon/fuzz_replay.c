/* Without libFuzzer: feeds every file of the corpus folders given as
 * arguments to the fuzz target once (the fuzz suite of normal builds). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    int n = 0;
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        if (!d) return perror(argv[a]), 1;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], de->d_name);
            FILE *f = fopen(path, "rb");
            if (!f) return perror(path), 1;
            fseek(f, 0, SEEK_END);
            long len = ftell(f);
            fseek(f, 0, SEEK_SET);
            uint8_t *p = malloc((size_t)len + 1);
            if (fread(p, 1, (size_t)len, f) != (size_t)len) return perror(path), 1;
            fclose(f);
            LLVMFuzzerTestOneInput(p, (size_t)len);
            free(p);
            n++;
        }
        closedir(d);
    }
    printf("replayed %d inputs\n", n);
    return n ? 0 : 1;
}
