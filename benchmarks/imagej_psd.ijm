// ImageJ batch PSD of a folder of TIFFs: Gaussian, Otsu, fill holes, watershed, Analyze Particles.
// Run: xvfb-run -a java -jar /usr/share/java/ij.jar -batch imagej_psd.ijm "<input dir>,<output csv>"
// (ImageJ 1.x menus need a display even in batch mode; areas come out in the TIFF's calibrated units.)
args = split(getArgument(), ",");
dir = args[0]; out = args[1];
setBatchMode(true);
run("Set Measurements...", "area centroid perimeter feret's redirect=None decimal=4");
list = getFileList(dir);
run("Clear Results");
for (i = 0; i < list.length; i++) {
  if (!endsWith(list[i], ".tif")) continue;
  open(dir + "/" + list[i]);
  run("32-bit");
  run("Gaussian Blur...", "sigma=1");
  setAutoThreshold("Otsu dark");
  setOption("BlackBackground", true);
  run("Convert to Mask");
  run("Fill Holes");
  run("Watershed");
  run("Analyze Particles...", "size=0-Infinity exclude display");
  close();
}
saveAs("Results", out);
